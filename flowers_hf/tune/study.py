"""The search: an Optuna study in a storage shared by its workers, each trial a ``train.py`` run scored on validation.

Optuna's API drives it rather than ``Trainer.hyperparameter_search``: a trial here is a whole staged run (frozen
backbone, then partly unfrozen), and the workers must end the study with exactly ``--n_trials`` results between
them. Each worker runs one trial at a time (``study.optimize(n_trials=1)``, which keeps the trial's heartbeat and
fails the trials of workers that died) for as long as the finished, pruned and running trials are fewer than asked.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from transformers import TrainerCallback

from flowers_hf.core.cli import parse_args
from flowers_hf.train import ARGUMENTS, train
from flowers_hf.tune.arguments import SearchArguments
from flowers_hf.tune.space import Parameter, as_flags

logger = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
# The splits a trial sees: the test split is read once, by the best configuration's run after the search.
SEARCH_SPLITS = ("train", "validation")


class Surplus(Exception):
    """A trial asked for after other workers had already taken the study's last trials: failed before it runs."""


class PruningCallback(TrainerCallback):
    """Reports every evaluation's validation metric to the trial (the step counts evaluations across the stages) and
    stops the run when the pruner says the trial is weaker than the others were at that point."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.key, self.evaluations = trial, metric if metric.startswith("eval_") else f"eval_{metric}", 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.key not in metrics:
            return
        self.trial.report(float(metrics[self.key]), self.evaluations)
        self.evaluations += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.key} {metrics[self.key]:.4f} after {self.evaluations} evaluations")


def open_study(options: SearchArguments, direction: str) -> optuna.Study:
    """The study in its storage, created on the first run and continued by every later one (or other worker)."""
    output_dir = Path(options.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    url = options.storage or f"sqlite:///{output_dir / 'study.db'}"
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=options.heartbeat_interval, grace_period=options.grace_period
    )
    return optuna.create_study(
        storage=storage, study_name=options.study_name, direction=direction, pruner=make_pruner(options),
        sampler=TrialSeededSampler(options.sampler_seed), load_if_exists=True,
    )  # fmt: skip


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's TPE sampler, seeded with ``seed`` + the trial's number: a study is reproducible trial by trial
    whichever worker runs a trial, and workers that start together do not sample the same configurations."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def _of(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if trial.number not in self._samplers:
            self._samplers[trial.number] = optuna.samplers.TPESampler(seed=self.seed + trial.number)
        return self._samplers[trial.number]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any) -> Any:
        return self._of(trial).sample_independent(study, trial, name, distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._samplers.pop(trial.number, optuna.samplers.TPESampler()).after_trial(study, trial, state, values)


def make_pruner(options: SearchArguments) -> optuna.pruners.BasePruner:
    """The pruner ``--pruner`` and its ``--pruner_*`` options name."""
    if options.pruner == "median":
        return optuna.pruners.MedianPruner(options.pruner_startup_trials, options.pruner_warmup_steps)
    if options.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(options.pruner_warmup_steps, 1))
    return optuna.pruners.NopPruner()


def run_worker(study: optuna.Study, space: list[Parameter], train_argv: list[str], options: SearchArguments) -> int:
    """Run trials until the study has ``options.n_trials`` finished or pruned ones (or running in other workers);
    the number this worker ran."""
    ran = 0
    while True:
        optuna.storages.fail_stale_trials(study)  # the trials of killed workers: failed, not counted
        states = [t.state for t in study.get_trials(deepcopy=False)]
        taken = sum(s in COUNTED or s == TrialState.RUNNING for s in states)
        if taken >= options.n_trials:
            return ran
        objective = _Objective(space, train_argv, options)
        study.optimize(objective, n_trials=1, catch=(Surplus,))
        ran += objective.ran


class _Objective:
    def __init__(self, space: list[Parameter], train_argv: list[str], options: SearchArguments) -> None:
        self.space, self.train_argv, self.options, self.ran = space, train_argv, options, 0

    def __call__(self, trial: optuna.Trial) -> float:
        earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(t.state != TrialState.FAIL for t in earlier) >= self.options.n_trials:
            raise Surplus(f"trial {trial.number} not run: the study had its {self.options.n_trials} trials")
        self.ran = 1
        params = {p.name: p.suggest(trial) for p in self.space}
        folder = trial_dir(self.options.output_dir, trial.number)
        argv = [*self.train_argv, *as_flags(params), "--output_dir", str(folder), "--push_to_hub", "false"]
        trial.set_user_attr("train_flags", argv)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        logger.info("Trial %d: %s", trial.number, params)
        arguments = parse_args(ARGUMENTS, argv, prog="train.py")
        args = arguments[-1]
        started = time.perf_counter()
        try:
            run = train(arguments, callbacks=[PruningCallback(trial, args.metric_for_best_model)], splits=SEARCH_SPLITS)
        finally:
            trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 2))
            _keep_small(folder)
        value = run.stages.best.best_metric
        if value is None:
            raise RuntimeError(f"trial {trial.number}: no validation score (is --eval_strategy set?)")
        return float(value)


def trial_dir(output_dir: str | Path, number: int) -> Path:
    return Path(output_dir) / "trials" / f"trial_{number:04d}"


def _keep_small(folder: Path) -> None:
    """A trial's folder keeps its configuration and each stage's trainer state (its history): no checkpoints, as a
    trial is never resumed (a killed one is failed and sampled anew)."""
    for checkpoint in folder.glob("stage*/checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def direction(greater_is_better: bool | None) -> str:
    return "minimize" if greater_is_better is False else "maximize"
