"""Command-line parsing shared by the entry points: ``--config file.yaml`` gives defaults, flags override."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transformers
import yaml
from transformers import HfArgumentParser

from flowers_hf.core.errors import ArgumentError, MissingFileError, UserError
from flowers_hf.core.versions import check_versions


def parse_args(
    dataclass_types: tuple[type, ...], argv: list[str] | None = None, prog: str | None = None
) -> tuple[Any, ...]:
    """Parse ``argv`` into instances of ``dataclass_types``, with defaults from an optional YAML preset.

    Args:
        dataclass_types: the argument dataclasses, as for ``HfArgumentParser``.
        argv: the arguments (default: ``sys.argv[1:]``); ``--config PATH`` names a YAML file of
            ``field: value`` pairs that replace the dataclass defaults.
        prog: the program name shown by ``--help``.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, prog=prog)
    parser.add_argument("--config", type=Path, help="YAML preset of defaults; command-line flags override it.")
    if known.config is not None:
        parser.set_defaults(**load_preset(known.config, dataclass_types))
    # The parser returns the dataclasses and, last, a namespace holding the already-read --config.
    *parsed, _ = parser.parse_args_into_dataclasses(args=rest)
    return tuple(parsed)


def load_preset(path: Path, dataclass_types: tuple[type, ...]) -> dict[str, Any]:
    """Read a YAML preset and check that every key is a known argument."""
    if not path.is_file():
        raise MissingFileError(f"--config {path}: no such file")
    preset = yaml.safe_load(path.read_text()) or {}
    if not isinstance(preset, dict):
        raise ArgumentError(f"--config {path}: expected 'argument: value' pairs, got {type(preset).__name__}")
    known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
    unknown = sorted(set(preset) - known)
    if unknown:
        raise ArgumentError(f"--config {path}: unknown argument(s) {unknown}")
    return preset


def setup_logging(should_log: bool = True, library_level: int = logging.WARNING) -> None:
    """This project's progress messages at info on the main process (warning on the others), to stderr: the one
    logging set-up of every entry point (train.py, the ``python -m flowers_hf.*`` commands, the demo, bench/).

    Args:
        should_log: whether this process reports (``TrainingArguments.should_log``).
        library_level: the level of transformers' and datasets' own messages (``get_process_log_level()``).
    """
    level = logging.INFO if should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, level=level)
    transformers.utils.logging.set_verbosity(library_level)


def run_cli(main: Callable[[list[str]], Any], argv: list[str]) -> int:
    """Run an entry point once the core libraries are checked to be recent enough (``flowers_hf.core.versions``); a
    ``UserError`` (a library too old, a bad argument, a missing file, offline, undecodable images, a model for other
    classes: ``flowers_hf.core.errors``) ends with its message and exit status 1 rather than a traceback; Ctrl-C
    with 130."""
    try:
        check_versions()
        main(argv)
    except UserError as error:
        logging.getLogger("flowers_hf").error("%s: %s", type(error).__name__, error)
        return 1
    except KeyboardInterrupt:
        return 130  # as a shell reports Ctrl-C; a stop that saved a checkpoint has logged how to resume
    return 0
