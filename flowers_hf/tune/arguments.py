"""The options of ``python -m flowers_hf.tune``; every other flag is a ``train.py`` flag, passed to each run."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowers_hf.core.errors import ArgumentError

PRUNERS = ("median", "halving", "none")


@dataclass
class LrFindArguments:
    """``lr_find``: Smith's learning-rate range test."""

    stage: int = field(default=1, metadata={"help": "The stage to probe: 1, or 2 (stage 1 is trained first)."})
    lr_min: float = field(default=1e-7, metadata={"help": "The first learning rate of the range."})
    lr_max: float = field(default=10.0, metadata={"help": "The last learning rate of the range."})
    num_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps of the test (default: one epoch, at least 50 and at most 100 steps)."},
    )
    smoothing: float = field(
        default=0.8, metadata={"help": "The loss's exponential smoothing factor (fastai: 0.98 over 100 steps)."}
    )
    diverge_factor: float = field(
        default=4.0, metadata={"help": "Stop once the smoothed loss exceeds its minimum by this factor."}
    )

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ArgumentError(f"--stage {self.stage}: the stages are 1 and 2")
        if not 0 < self.lr_min < self.lr_max:
            raise ArgumentError(f"--lr_min {self.lr_min} --lr_max {self.lr_max}: need 0 < lr_min < lr_max")
        if self.num_steps is not None and self.num_steps < 5:
            raise ArgumentError(f"--num_steps {self.num_steps}: a range test needs at least 5 steps")
        if not 0 <= self.smoothing < 1:
            raise ArgumentError(f"--smoothing {self.smoothing}: must be in [0, 1)")


@dataclass
class SearchArguments:
    """``search``: an Optuna study whose trials are ``train.py`` runs, scored on validation."""

    search: str = field(
        default="configs/search/default.yaml", metadata={"help": "The search space: a YAML file (see docs)."}
    )
    n_trials: int = field(default=20, metadata={"help": "Trials the study ends with (finished or pruned)."})
    output_dir: str = field(default="runs/search", metadata={"help": "The study's folder: trials, report, best."})
    storage: str | None = field(
        default=None,
        metadata={"help": "An Optuna RDB URL shared by the workers (default: sqlite in --output_dir)."},
    )
    study_name: str = field(default="flowers_hf", metadata={"help": "The study's name in the storage."})
    sampler_seed: int = field(default=0, metadata={"help": "TPE's seed: trial k samples with seed + k."})
    pruner: str = field(default="median", metadata={"help": f"Stopping weak trials early: {', '.join(PRUNERS)}."})
    pruner_warmup_steps: int = field(
        default=1, metadata={"help": "Evaluations a trial always gets before it may be pruned."}
    )
    pruner_startup_trials: int = field(
        default=2, metadata={"help": "Trials that finish unpruned before the median pruner prunes any."}
    )
    heartbeat_interval: int = field(
        default=30, metadata={"help": "Seconds between a running trial's heartbeats in the storage."}
    )
    grace_period: int = field(
        default=90, metadata={"help": "Seconds without a heartbeat after which a trial counts as failed (killed)."}
    )
    final_run: bool = field(
        default=True,
        metadata={"help": "After the search, train best.yaml once and report its test score (the one test read)."},
    )

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ArgumentError(f"--n_trials {self.n_trials}: must be at least 1")
        if self.pruner not in PRUNERS:
            raise ArgumentError(f"--pruner {self.pruner}: choose one of {', '.join(PRUNERS)}")
        if not 0 < self.heartbeat_interval < self.grace_period:
            raise ArgumentError("need 0 < --heartbeat_interval < --grace_period")
