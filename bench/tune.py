"""The search's benchmark, on the synthetic set with a small configuration, in one run (the machines are noisy:
the ratios are measured side by side):

- 12 trials with the search's pruner (``--pruner``, the search's default) against the same 12 sampled
  configurations without pruning (enqueued in a second study, trial by trial in lockstep): wall-time ratio
  (target ≤ 0.5) and best validation (target: equal within noise);
- the best trial's validation against the quickstart preset's on the same data and model (target: better);
- the learning-rate finder's suggestions against the best trial's learning rate (target: within ×3).

    python bench/tune.py                      # 64 min on the 2-core VM beside other jobs (BENCHMARKS.md)
    python bench/tune.py --n_trials 4 --images_per_class 12 --output_dir /tmp/tune_bench   # a smoke run
    python bench/tune.py --sampler_seed 100 --pruner median   # another study, another pruner
    python bench/tune.py --replay runs/bench_tune/unpruned/study.db other/study.db   # no training: seconds

Prints the figures as one JSON line, then a table. ``--replay`` trains nothing: it sends the learning curves of
finished unpruned studies, trial by trial in their order, through each candidate pruner (training is deterministic,
so a trial's curve is what it would have reported), and prints the epochs each would have trained and whether it
kept the best trial.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from flowers_hf.core.cli import parse_args, setup_logging
from flowers_hf.data import load_data
from flowers_hf.train import ARGUMENTS, prepare, train
from flowers_hf.tune.__main__ import main as tune
from flowers_hf.tune.arguments import PRUNERS, LrFindArguments, SearchArguments
from flowers_hf.tune.lr_find import run_range_test
from flowers_hf.tune.study import SEARCH_SPLITS, make_pruner

logger = logging.getLogger("bench")


@dataclass
class TuneBenchArguments:
    n_trials: int = field(default=12, metadata={"help": "Trials of each study."})
    num_classes: int = field(default=10, metadata={"help": "Synthetic classes."})
    images_per_class: int = field(
        default=80, metadata={"help": "Synthetic images per class, all splits (80: 10 train, 10 validation)."}
    )
    output_dir: str = field(default="runs/bench_tune", metadata={"help": "Where the studies go (emptied first)."})
    search: str = field(default="configs/search/bench.yaml", metadata={"help": "The search space."})
    pruner: str = field(
        default=SearchArguments.pruner, metadata={"help": f"The pruned study's pruner: {', '.join(PRUNERS[:-1])}."}
    )
    sampler_seed: int = field(default=0, metadata={"help": "TPE's seed (trial k: seed + k; use seeds 12 apart)."})
    replay: list[str] = field(
        default_factory=list,
        metadata={"help": "Unpruned studies' study.db files: replay their curves through the candidate pruners."},
    )


def _base(args: TuneBenchArguments) -> list[str]:
    return ["--config", "configs/quickstart.yaml", "--synthetic_num_classes", str(args.num_classes),
            "--synthetic_images_per_class", str(args.images_per_class), "--synthetic_image_size", "40",
            "--image_size", "32", "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip


def _study(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="flowers_hf", storage=f"sqlite:///{folder / 'study.db'}")


def _search(args: TuneBenchArguments, folder: Path, pruner: str, n_trials: int) -> float:
    started = time.perf_counter()
    tune(["search", "--search", args.search, "--n_trials", str(n_trials), "--output_dir", str(folder), "--pruner",
          pruner, "--sampler_seed", str(args.sampler_seed), "--final_run", "false", *_base(args)])  # fmt: skip
    return time.perf_counter() - started


def measure(args: TuneBenchArguments) -> dict[str, Any]:
    out = Path(args.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    pruned_dir, plain_dir = out / "pruned", out / "unpruned"
    plain_dir.mkdir(parents=True)
    plain = optuna.create_study(study_name="flowers_hf", storage=f"sqlite:///{plain_dir / 'study.db'}",
                                direction="maximize")  # fmt: skip
    # In lockstep, so that the machine's load weighs on both alike: trial k with pruning, then the same
    # configuration trained to its end.
    pruned_s = plain_s = 0.0
    for k in range(1, args.n_trials + 1):
        pruned_s += _search(args, pruned_dir, args.pruner, k)
        plain.enqueue_trial(_study(pruned_dir).trials[k - 1].params)
        plain_s += _search(args, plain_dir, "none", k)
    pruned, plain = _study(pruned_dir), _study(plain_dir)

    # The quickstart preset's own hyperparameters on the same data and model; the range test on them.
    arguments = parse_args(ARGUMENTS, [*_base(args), "--output_dir", str(out / "preset")])
    preset = train(arguments, splits=SEARCH_SPLITS).stages.best.best_metric
    finder_args = parse_args(ARGUMENTS, [*_base(args), "--output_dir", str(out / "lr_find")])
    found = run_range_test(prepare(finder_args, splits=SEARCH_SPLITS), finder_args[-1], LrFindArguments())
    best_lr = pruned.best_params["learning_rate"]
    return {
        "n_trials": args.n_trials,
        "pruner": args.pruner,
        "sampler_seed": args.sampler_seed,
        # The trials' own wall time: a search runs its start-up and writes its report once, this benchmark once per
        # trial (to keep the lockstep), so the search commands' time is given too but not judged.
        "pruned_trials_s": round(_trials_s(pruned), 1),
        "unpruned_trials_s": round(_trials_s(plain), 1),
        "wall_ratio": round(_trials_s(pruned) / _trials_s(plain), 3),
        "pruned_commands_s": round(pruned_s, 1),
        "unpruned_commands_s": round(plain_s, 1),
        "epochs_pruned": _epochs(pruned),
        "epochs_unpruned": _epochs(plain),
        "trials_pruned": sum(t.state == TrialState.PRUNED for t in pruned.trials),
        "pruned_at": _pruned_at(pruned),
        "best_trial_pruned": pruned.best_trial.number,
        "best_trial_unpruned": plain.best_trial.number,
        "best_validation_pruned": pruned.best_value,
        "best_validation_unpruned": plain.best_value,
        "preset_validation": preset,
        "best_learning_rate": best_lr,
        "lr_find_valley": found.valley,
        "lr_find_steepest": found.steepest,
        "valley_over_best_lr": found.valley / best_lr,
        "steepest_over_best_lr": found.steepest / best_lr,
        "lr_find_steps": len(found.losses),
        "validation_images": len(prepare(arguments, splits=SEARCH_SPLITS).data.splits["validation"]),
    }


def _trials_s(study: optuna.Study) -> float:
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials if t.datetime_complete)


def _pruned_at(study: optuna.Study) -> list[list[int]]:
    """Each pruned trial: ``[number, evaluations it had, epochs it was given]``."""
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    return [[t.number, len(t.intermediate_values), int(t.params["num_train_epochs"])] for t in pruned]


def _epochs(study: optuna.Study) -> int:
    """Epochs trained over the study: one validation score is reported per epoch."""
    return sum(len(t.intermediate_values) for t in study.trials)


def noise(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` images (binomial)."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def table(m: dict[str, Any]) -> str:
    within = max(m["steepest_over_best_lr"], 1 / m["steepest_over_best_lr"]) <= 3
    se = noise(m["best_validation_unpruned"], m["validation_images"])
    gap = m["best_validation_unpruned"] - m["best_validation_pruned"]
    rows = [
        ("trials' wall time, pruned / unpruned (≤ 0.5)", f"{m['pruned_trials_s']:.0f} s / "
         f"{m['unpruned_trials_s']:.0f} s = {m['wall_ratio']:.2f}; epochs {m['epochs_pruned']} / "
         f"{m['epochs_unpruned']}; {m['trials_pruned']} of {m['n_trials']} pruned", m["wall_ratio"] <= 0.5),
        ("best validation, pruned vs unpruned (equal within noise: 1 s.e.)", f"{m['best_validation_pruned']:.4f} vs "
         f"{m['best_validation_unpruned']:.4f} (trial {m['best_trial_pruned']} vs {m['best_trial_unpruned']}; "
         f"s.e. {se:.3f} on {m['validation_images']} images)", gap <= se),
        ("best trial vs the quickstart preset (better)", f"{m['best_validation_pruned']:.4f} vs "
         f"{m['preset_validation']:.4f}", m["best_validation_pruned"] > m["preset_validation"]),
        ("lr_find's suggestion (steepest) vs the best trial's rate (×3)", f"{m['lr_find_steepest']:.2e} vs "
         f"{m['best_learning_rate']:.2e} (×{m['steepest_over_best_lr']:.2f}); valley {m['lr_find_valley']:.2e} "
         f"(×{m['valley_over_best_lr']:.2f})", within),
    ]  # fmt: skip
    lines = ["| figure (target) | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'no'} |" for name, value, ok in rows]
    return "\n".join(lines)


# The pruners replayed: the search's own (as its flags make them), then Optuna's others for comparison.
CANDIDATES: dict[str, Any] = {
    "median, 2 start-up, 1 warm-up": lambda: make_pruner(SearchArguments(pruner="median")),
    "median, 2 start-up, 0 warm-up": lambda: make_pruner(SearchArguments(pruner="median", pruner_warmup_steps=0)),
    "median, 2 start-up, 2 warm-up": lambda: make_pruner(SearchArguments(pruner="median", pruner_warmup_steps=2)),
    "median, 5 start-up, 0 warm-up (Optuna's)": lambda: optuna.pruners.MedianPruner(),
    "keep the top third, 2 start-up, 1 warm-up": lambda: optuna.pruners.PercentilePruner(100 / 3, 2, 1),
    "halving, rungs 1, 4 (η 4)": lambda: make_pruner(SearchArguments(pruner="halving")),
    "halving, rungs 1, 3, 9 (η 3)": lambda: optuna.pruners.SuccessiveHalvingPruner(1, 3),
    "halving, rungs 2, 4, 8 (η 2)": lambda: optuna.pruners.SuccessiveHalvingPruner(2, 2),
    "Hyperband, 1 to 8 evaluations (η 3)": lambda: optuna.pruners.HyperbandPruner(1, 8, 3),
}


def replay(curves: list[list[float]], pruner: optuna.pruners.BasePruner) -> tuple[int, float]:
    """The evaluations a pruner lets a study of these curves (in this order) run, and the best value it finds."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    used, best = 0, -math.inf
    for curve in curves:
        trial = study.ask()
        for step, value in enumerate(curve):
            trial.report(value, step)
            used += 1
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, max(curve))
            best = max(best, max(curve))
    return used, best


def replay_table(paths: list[str], validation_images: int) -> str:
    """Each candidate on each study: the evaluations' ratio to the unpruned study's, and the best found: ``=`` the
    same value, ``~`` lower within one standard error, ``✗`` lower by more."""
    studies = [[[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in _study(Path(p).parent).trials
                if t.state == TrialState.COMPLETE] for p in paths]  # fmt: skip
    lines = [f"| pruner | {' | '.join(Path(p).parent.name for p in paths)} | ≤ 0.5 | best kept |",
             f"| --- |{' --- |' * len(paths)} --- | --- |"]  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, make in CANDIDATES.items():
        cells, met, kept = [], 0, 0
        for curves in studies:
            used, best = replay(curves, make())
            top, ratio = max(map(max, curves)), used / sum(map(len, curves))
            mark = "=" if best == top else "~" if top - best <= noise(top, validation_images) else "✗"
            cells.append(f"{ratio:.2f} {mark}")
            met, kept = met + (ratio <= 0.5), kept + (mark != "✗")
        lines.append(f"| {name} | {' | '.join(cells)} | {met} of {len(studies)} | {kept} of {len(studies)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    (args,) = parse_args((TuneBenchArguments,), argv, prog="bench/tune.py")
    if args.replay:
        data_args = parse_args(ARGUMENTS, _base(args))[1]
        print(replay_table(args.replay, len(load_data(args=data_args).splits["validation"])))
        return {}
    figures = measure(args)
    print(json.dumps(figures), flush=True)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
