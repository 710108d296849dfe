"""``python -m flowers_hf.tune lr_find|search [options] [train.py flags]``.

    python -m flowers_hf.tune lr_find --config configs/quickstart.yaml              # writes runs/quickstart/lr_find.*
    python -m flowers_hf.tune lr_find --config configs/efficientnet_b3.yaml --stage 2
    python -m flowers_hf.tune search --config configs/quickstart.yaml --n_trials 12 --output_dir runs/search
    python -m flowers_hf.tune search … --storage postgresql://user:pass@host/db    # the same on every machine

Every flag that is not the command's own is a ``train.py`` flag (``--config``, ``--dataset``, …), given to the run.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from transformers import HfArgumentParser

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.core.errors import ArgumentError
from flowers_hf.train import ARGUMENTS, prepare
from flowers_hf.train import main as train_main
from flowers_hf.tune.arguments import LrFindArguments, SearchArguments
from flowers_hf.tune.lr_find import run_range_test, suggested_flag, write_range_test
from flowers_hf.tune.report import BEST_PRESET, BEST_RUN, add_card_section, write_best_preset, write_plots, write_report
from flowers_hf.tune.space import load_space
from flowers_hf.tune.study import COUNTED, SEARCH_SPLITS, direction, open_study, run_worker

logger = logging.getLogger("flowers_hf.tune")

PROG = "python -m flowers_hf.tune"
COMMANDS = ("lr_find", "search")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise ArgumentError(f"{PROG}: give a command first, one of {', '.join(COMMANDS)} (then --help)")
    command, rest = argv[0], argv[1:]
    setup_logging()
    return lr_find(rest) if command == "lr_find" else search(rest)


def _own_options(cls: type, argv: list[str]):
    parser = HfArgumentParser(cls, prog=f"{PROG} {cls.__name__.removesuffix('Arguments').lower()}")
    options, train_argv = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    return options, train_argv


def lr_find(argv: list[str]) -> dict:
    """The range test; ``lr_find.json`` and ``lr_find.png`` in the run's ``--output_dir``."""
    options, train_argv = _own_options(LrFindArguments, argv)
    arguments = parse_args(ARGUMENTS, train_argv, prog="train.py")
    args = arguments[-1]
    run = prepare(arguments, splits=SEARCH_SPLITS)
    result = run_range_test(run, args, options)
    json_path, plot_path = write_range_test(result, options.stage, Path(args.output_dir))
    print(
        f"Learning-rate range test, stage {options.stage}, {len(result.losses)} steps"
        f"{' (stopped: the loss diverged)' if result.stopped_early else ''}: steepest descent at "
        f"{result.steepest:.2e}, valley at {result.valley:.2e}.\n"
        f"  Suggested: python train.py {' '.join(train_argv)} {suggested_flag(result, options.stage)}\n"
        f"  Plot: {plot_path}; curve: {json_path}"
    )
    return {"steepest": result.steepest, "valley": result.valley}


def search(argv: list[str]) -> dict:
    """A worker of the study; the report after its last trial; the best configuration trained once it is done."""
    options, train_argv = _own_options(SearchArguments, argv)
    if any(flag == "--output_dir" or flag.startswith("--output_dir=") for flag in train_argv):
        raise ArgumentError("--output_dir is the study's folder here; each trial gets OUTPUT_DIR/trials/trial_N")
    args = parse_args(ARGUMENTS, train_argv, prog="train.py")[-1]  # checked now, before any trial
    space = load_space(options.search, ARGUMENTS)
    warn_if_the_pruner_compares_schedules(space, options.pruner)
    output_dir = Path(options.output_dir)
    study = open_study(options, direction(args.greater_is_better))
    ran = run_worker(study, space, train_argv, options)
    logger.info("This worker ran %d trial(s)", ran)
    done = [t for t in study.get_trials(deepcopy=False) if t.state in COUNTED]
    if not any(t.value is not None for t in done):
        raise ArgumentError(f"no trial of study '{study.study_name}' has finished: nothing to report yet")
    write_best_preset(study, output_dir)
    if options.final_run and len(done) >= options.n_trials and _claim(output_dir):
        logger.info("Training the best configuration (%s): the one read of the test split", BEST_PRESET)
        train_main(["--config", str(output_dir / BEST_PRESET)])
        add_card_section(study, output_dir)
    path = write_report(study, output_dir, write_plots(study, output_dir))
    print(f"Study '{study.study_name}': {len(done)} trials; best validation {study.best_value:.4f}; report: {path}")
    return {"best_value": study.best_value, "best_params": study.best_params, "trials_run_here": ran}


SCHEDULE_LENGTH = ("num_train_epochs", "max_steps")


def warn_if_the_pruner_compares_schedules(space: list, pruner: str) -> bool:
    """A pruner compares trials at the same evaluation; where the schedule's length is searched, a long trial is then
    judged early in its learning-rate decay against short ones near their end (BENCHMARKS.md: the best trial was
    pruned so). Warns, and returns whether it did."""
    searched = [p.name for p in space if p.name in SCHEDULE_LENGTH]
    if searched and pruner != "none":
        logger.warning(
            "%s is searched and --pruner %s compares trials at the same evaluation: a longer trial, early in its "
            "schedule, is judged against shorter ones near their end and may be stopped while it would still win. "
            "Fix the length in the preset and leave it out of --search, or use --pruner none.",
            " and ".join(searched), pruner,
        )  # fmt: skip
    return bool(searched and pruner != "none")


def _claim(output_dir: Path) -> bool:
    """Whether this worker trains the best configuration: the first to create the claim file does (a rerun of its
    command resumes that run); a finished run is not trained again."""
    if (output_dir / BEST_RUN / "test_results.json").is_file():
        return False
    claim = output_dir / f".{BEST_RUN}.claimed"
    try:
        with open(claim, "x") as file:
            file.write(f"{socket.gethostname()}:{os.getpid()}\n")
        return True
    except FileExistsError:
        owner = claim.read_text().strip()
        if owner.split(":")[0] == socket.gethostname() and not _alive(int(owner.split(":")[1])):
            claim.write_text(f"{socket.gethostname()}:{os.getpid()}\n")  # its worker died: take the run over
            return True
        logger.info("Worker %s trains the best configuration", owner)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
