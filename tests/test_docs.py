"""The commands in README.md and docs/*.md name presets that exist and flags their entry points accept.

Each command in a fenced code block that runs ``python train.py``, ``python demo/app.py``,
``python -m flowers_hf.<module>``, ``accelerate launch … train.py …`` or ``torchrun … train.py …`` is read
(backslash continuations joined, ``# …`` comments dropped, a leading ``VAR=value``, ``time`` or ``srun`` skipped)
and checked, never run: every ``--config`` and ``--config_file`` file exists in the repository, and every
``--flag`` is an option string of the parser of that entry point (for ``accelerate launch`` and ``torchrun``, the
launcher's flags against the launcher's parser and the flags after ``train.py`` against train.py's).
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from transformers import HfArgumentParser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MIN_COMMANDS = 35  # the documents hold more (41 on 2026-12-02); fewer means the collection below stopped finding them
CONFIG_FLAGS = ("--config", "--config_file", "--config-file")  # flags whose value is a file of this repository
PRESET_FLAG = "--config"  # flowers_hf.core.cli.parse_args adds it to every parser it builds
SEPARATORS = {"&&", "||", ";", "|"}


# The option strings each entry point accepts, built from the same pieces the entry point parses with. Each function
# gets the command's first positional word (a run folder, a source, or the subcommand of flowers_hf.push). The
# imports are inside the functions, so that a module that moved fails the commands that use it, not the collection.
def _data_arguments() -> type:
    from flowers_hf.data.arguments import DataArguments

    return DataArguments


def _train_options(subcommand: str | None) -> set[str]:
    import train

    return _option_strings(HfArgumentParser(train.ARGUMENTS)) | {PRESET_FLAG}


def _evaluate_options(subcommand: str | None) -> set[str]:
    from flowers_hf.evaluation.arguments import EvaluationArguments

    return _option_strings(HfArgumentParser((EvaluationArguments, _data_arguments()))) | {PRESET_FLAG}


def _export_options(subcommand: str | None) -> set[str]:
    from flowers_hf.export.arguments import ExportArguments

    return _option_strings(HfArgumentParser((ExportArguments,))) | {PRESET_FLAG}


def _data_options(subcommand: str | None) -> set[str]:
    return _option_strings(HfArgumentParser((_data_arguments(),))) | {PRESET_FLAG}


def _audit_options(subcommand: str | None) -> set[str]:
    from flowers_hf.audit.arguments import AuditArguments

    return _option_strings(HfArgumentParser((AuditArguments, _data_arguments()))) | {PRESET_FLAG}


def _push_options(subcommand: str | None) -> set[str]:
    """``python -m flowers_hf.push push|push-space …``: the subcommand's parser, as ``main`` builds it."""
    from flowers_hf.push import main

    parser = _parser_of(lambda: main([]))
    (subcommands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert subcommand in subcommands.choices, f"no subcommand {subcommand!r} ({list(subcommands.choices)})"
    return _option_strings(parser) | _option_strings(subcommands.choices[subcommand])


def _tune_options(subcommand: str | None) -> set[str]:
    """``python -m flowers_hf.tune lr_find|search …``: the command's own options and every train.py flag."""
    from flowers_hf.tune.arguments import LrFindArguments, SearchArguments

    commands = {"lr_find": LrFindArguments, "search": SearchArguments}
    assert subcommand in commands, f"no command {subcommand!r} ({list(commands)})"
    return _option_strings(HfArgumentParser((commands[subcommand],))) | _train_options(None)


def _demo_options(subcommand: str | None) -> set[str]:
    """``python demo/app.py …``: the parser its ``parse_args`` builds."""
    from demo import app

    parser = argparse.ArgumentParser()
    app._model_options(parser)
    app._server_options(parser)
    return _option_strings(parser)


def _accelerate_options(subcommand: str | None) -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return _option_strings(launch_command_parser())


def _torchrun_options(subcommand: str | None) -> set[str]:
    from torch.distributed.run import get_args_parser

    return _option_strings(get_args_parser())


# What the documents name (``python -m MODULE`` or the script) -> the option strings of its parser. Only those in
# SUBCOMMANDS see the first positional word; the others' parsers do not depend on it.
ENTRY_POINTS: dict[str, Callable[[str | None], set[str]]] = {
    "train.py": _train_options,
    "flowers_hf.evaluate": _evaluate_options,
    "flowers_hf.export": _export_options,
    "flowers_hf.data": _data_options,
    "flowers_hf.push": _push_options,
    "flowers_hf.tune": _tune_options,
    "flowers_hf.audit": _audit_options,
    "demo/app.py": _demo_options,
}
SUBCOMMANDS = {"flowers_hf.push", "flowers_hf.tune"}
LAUNCHERS: dict[str, Callable[[str | None], set[str]]] = {
    "accelerate launch": _accelerate_options,
    "torchrun": _torchrun_options,
}


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(call: Callable[[], object]) -> argparse.ArgumentParser:
    """The parser an entry point builds inside its ``main``, caught as it starts parsing (nothing else runs)."""
    original = argparse.ArgumentParser.parse_args

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    argparse.ArgumentParser.parse_args = catch
    try:
        call()
    except _Parsed as parsed:
        return parsed.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError("the entry point returned without parsing its arguments")


@cache
def _options(kind: str, subcommand: str | None) -> frozenset[str]:
    return frozenset({**ENTRY_POINTS, **LAUNCHERS}[kind](subcommand))


@dataclass
class Command:
    where: str  # file:line
    text: str  # the command as one line
    parts: list[tuple[str, list[str]]]  # (entry point or launcher, its words), in order


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines of ``text``'s fenced code blocks (line number, line), backslash continuations joined."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def parse_command(line: str) -> list[tuple[str, list[str]]] | None:
    """The entry points of one shell line (and the launcher that runs one), or ``None`` if it runs none of them."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: Python or prose, not a command
        return None
    # One shell command at a time (`a && b`).
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    parts = []
    for words in commands:
        while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]) or words[0] in ("time", "srun")):
            words = words[1:]
        parts += _entry_points(words)
    return parts or None


def _entry_points(words: list[str]) -> list[tuple[str, list[str]]]:
    if len(words) >= 2 and words[0] in ("python", "python3") and words[1] in ("train.py", "demo/app.py"):
        return [(words[1], words[2:])]
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        module = words[2]
        return [(module, words[3:])] if module.startswith("flowers_hf") else []
    launcher = next((name for name in LAUNCHERS if words[: len(name.split())] == name.split()), None)
    if launcher and "train.py" in words:
        script = words.index("train.py")
        return [(launcher, words[len(launcher.split()) : script]), ("train.py", words[script + 1 :])]
    return []


def collect(paths: list[Path]) -> list[Command]:
    found = []
    for path in paths:
        for number, line in code_lines(path.read_text()):
            parts = parse_command(line)
            if parts:
                name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(Command(f"{name}:{number}", " ".join(line.split()), parts))
    return found


def problems(command: Command) -> list[str]:
    """What is wrong with one command: an unknown entry point, a missing preset file, a flag its parser lacks."""
    found = []
    for kind, words in command.parts:
        if kind not in ENTRY_POINTS and kind not in LAUNCHERS:
            found.append(f"{kind}: not an entry point this test knows ({sorted(ENTRY_POINTS)})")
            continue
        first = next((word for word in words if not word.startswith("-")), None) if kind in SUBCOMMANDS else None
        options = _options(kind, first)
        for index, word in enumerate(words):
            if not word.startswith("--"):
                continue
            flag, _, value = word.partition("=")
            if flag not in options:
                found.append(f"{kind}: no flag {flag}")
            if flag in CONFIG_FLAGS:
                value = value or (words[index + 1] if index + 1 < len(words) else "")
                if not (ROOT / value).is_file():
                    found.append(f"{kind}: {flag} {value}: no such file in the repository")
    return [f"{command.where}: {problem} in `{command.text}`" for problem in found]


COMMANDS = collect(DOCUMENTS)


def test_the_documents_hold_commands():
    assert len(COMMANDS) >= MIN_COMMANDS, f"only {len(COMMANDS)} commands found in {[p.name for p in DOCUMENTS]}"
    kinds = {kind for command in COMMANDS for kind, _ in command.parts}
    assert set(ENTRY_POINTS) | {"accelerate launch"} <= kinds, f"no command of {set(ENTRY_POINTS) - kinds}"


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_command_names_existing_presets_and_flags(command):
    assert not problems(command), "\n".join(problems(command))


def test_a_wrong_flag_or_preset_is_reported(tmp_path):
    document = tmp_path / "README.md"
    document.write_text(
        "Text `python train.py --not_checked` outside a block.\n"
        "```bash\n"
        "python train.py --config configs/quickstart.yaml \\\n"
        "    --made_up_flag 3   # a comment --also_not_checked\n"
        "HF_HUB_OFFLINE=1 python -m flowers_hf.evaluate runs/quickstart --split test --tta\n"
        "python -m flowers_hf.export runs/quickstart --config configs/no_such_preset.yaml\n"
        "accelerate launch --config_file accelerate_config.yaml --num_procesess 2 train.py --max_steps 1\n"
        "python -m flowers_hf.push push runs/r18 --repo USER/NAME --model USER/NAME\n"
        "python bench/run.py --anything\n"
        "python demo/app.py --model runs/quickstart --prot 7861\n"
        "```\n"
    )
    found = collect([document])
    assert [command.where.rsplit(":", 1)[1] for command in found] == ["3", "5", "6", "7", "8", "10"]
    reported = [problem for command in found for problem in problems(command)]
    assert len(reported) == 5, reported
    for text in (
        "train.py: no flag --made_up_flag",
        "configs/no_such_preset.yaml: no such file",
        "accelerate launch: no flag --num_procesess",
        "flowers_hf.push: no flag --model",  # push-space's flag, not push's
        "demo/app.py: no flag --prot",
    ):
        assert any(text in problem for problem in reported), (text, reported)
