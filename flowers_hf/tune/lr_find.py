"""Smith's learning-rate range test through the real training path: the run's model, data, frozen stage, precision
and Trainer, the learning rate raised exponentially from step to step while the smoothed loss is recorded.

The suggestions are those fastai reports: ``steepest``, where the smoothed loss falls fastest against log(lr), and
``valley``, the middle of the longest stretch over which it keeps falling (more robust to a noisy curve).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from transformers import TrainerCallback

from flowers_hf.core.errors import ArgumentError
from flowers_hf.training.layer_groups import set_trainable
from flowers_hf.training.stages import plan_stages, train_stages
from flowers_hf.tune.arguments import LrFindArguments

matplotlib.use("Agg")
import matplotlib.pyplot as plt

logger = logging.getLogger(__name__)

LR_FIND_PLOT = "lr_find.png"
LR_FIND_FILE = "lr_find.json"


@dataclass
class RangeTest:
    """The recorded curve and its suggestions."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    steepest: float
    valley: float
    stopped_early: bool


class _RaiseLearningRate(TrainerCallback):
    """Sets every parameter group's rate to the step's point of the exponential range (each group keeps its ratio
    to the base rate: a lower backbone rate stays lower), and records the loss the Trainer logs every step."""

    def __init__(self, rates: np.ndarray, base: float, smoothing: float, diverge_factor: float) -> None:
        self.rates, self.base, self.smoothing, self.diverge_factor = rates, base, smoothing, diverge_factor
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.learning_rates: list[float] = []  # the rate of the step each logged loss is of
        self._mean = 0.0

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        rate = self.rates[min(state.global_step, len(self.rates) - 1)]
        for group in optimizer.param_groups:
            group["lr"] = rate * group.get("initial_lr", self.base) / self.base

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        # The Trainer may log less often than every step (it logs on its own step count): the rate is the step's.
        self.learning_rates.append(float(self.rates[min(state.global_step, len(self.rates)) - 1]))
        self.losses.append(loss)
        self._mean = self.smoothing * self._mean + (1 - self.smoothing) * loss
        self.smoothed.append(self._mean / (1 - self.smoothing ** len(self.losses)))
        if not math.isfinite(loss) or self.smoothed[-1] > self.diverge_factor * min(self.smoothed):
            control.should_training_stop = True


def suggestions(learning_rates: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """``(steepest, valley)`` of a smoothed loss curve, read from a tenth of the way in (where the average has
    settled) up to its minimum (the diverging tail left out).

    Args:
        learning_rates: the increasing learning rates.
        smoothed: the smoothed loss at each.
    """
    start = len(smoothed) // 10
    end = start + int(np.nanargmin(smoothed[start:])) + 1
    rates, losses = learning_rates[start:end], smoothed[start:end]
    if len(rates) < 3:
        return float(rates[0]), float(rates[0])
    slope = np.gradient(losses, np.log10(rates))
    steepest = float(rates[int(np.argmin(slope))])
    return steepest, float(rates[_valley(losses)])


def _valley(losses: np.ndarray) -> int:
    """The middle of the longest decreasing subsequence of ``losses`` (its first to its last point)."""
    n = len(losses)
    length, start = np.ones(n, dtype=int), np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = int(np.argmax(length))
    return (int(start[end]) + end) // 2


def run_range_test(run: Any, args: Any, options: LrFindArguments) -> RangeTest:
    """The range test on a copy of ``run``'s model (``run``: a ``flowers_hf.train.Prepared``), for the stage
    ``options.stage``: the run's own model is left as it was, weights, frozen layers and all.

    Args:
        run: the prepared run: model, parameter groups, data and Trainer factory.
        args: its ``FlowersTrainingArguments``.
        options: the range and the stopping rule.
    """
    model = copy.deepcopy(run.model)
    make_trainer = partial(run.make_trainer, model=model)
    with tempfile.TemporaryDirectory(prefix="lr_find_") as scratch:
        if options.stage == 2:
            _train_stage_one(model, run.groups, make_trainer, args, Path(scratch) / "stage1")
        stage = plan_stages(args, len(run.groups))[options.stage - 1]
        set_trainable(model.timm_model, run.groups, stage.trainable_groups)
        return _probe(make_trainer, len(run.data.splits["train"]), args, options, Path(scratch) / "probe")


def _train_stage_one(model: Any, groups: list, make_trainer: Any, args: Any, folder: Path) -> None:
    if args.stage2_epochs <= 0:
        raise ArgumentError("--stage 2: this configuration has no second stage (--stage2_epochs 0)")
    logger.info("Training stage 1 first, as the run would, to probe stage 2 from its result")
    stage_one = dataclasses.replace(args, stage2_epochs=0, output_dir=str(folder), save_total_limit=1)
    train_stages(model, groups, stage_one, make_trainer)


def _probe(make_trainer: Any, num_images: int, args: Any, options: LrFindArguments, folder: Path) -> RangeTest:
    steps_per_epoch = math.ceil(num_images / (args.per_device_train_batch_size * args.world_size))
    steps = options.num_steps or max(50, min(100, steps_per_epoch // max(args.gradient_accumulation_steps, 1)))
    rates = np.geomspace(options.lr_min, options.lr_max, steps)
    probe_args = dataclasses.replace(
        args, output_dir=str(folder), max_steps=steps, learning_rate=options.lr_min, lr_scheduler_type="constant",
        warmup_steps=0, eval_strategy="no", save_strategy="no", logging_strategy="steps", logging_steps=1,
        load_best_model_at_end=False,
        early_stopping_patience=0, ema_decay=0.0, report_to=[], hub_token=None, push_to_hub=False,
    )  # fmt: skip
    recorder = _RaiseLearningRate(rates, options.lr_min, options.smoothing, options.diverge_factor)
    trainer = make_trainer(probe_args)
    trainer.add_callback(recorder)
    trainer.train()
    smoothed = np.array(recorder.smoothed)
    learning_rates = np.array(recorder.learning_rates)
    steepest, valley = suggestions(learning_rates, np.where(np.isfinite(smoothed), smoothed, np.inf))
    stopped = trainer.state.global_step < steps
    return RangeTest(learning_rates.tolist(), recorder.losses, recorder.smoothed, steepest, valley, stopped)


def write_range_test(result: RangeTest, stage: int, output_dir: Path) -> tuple[Path, Path]:
    """``lr_find.json`` (the curve and suggestions) and ``lr_find.png`` (loss against learning rate, log axis)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "flag": suggested_flag(result, stage), **dataclasses.asdict(result)}
    json_path = output_dir / LR_FIND_FILE
    json_path.write_text(json.dumps(record, indent=2, allow_nan=True))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.learning_rates, result.losses, color="0.75", lw=1, label="loss")
    ax.plot(result.learning_rates, result.smoothed, color="C0", lw=2, label="smoothed")
    for name, rate, color in (("steepest", result.steepest, "C3"), ("valley", result.valley, "C2")):
        index = result.learning_rates.index(rate)
        ax.plot(rate, result.smoothed[index], "o", color=color, ms=8, label=f"{name}: {rate:.2e}")
    ax.set(
        xscale="log", xlabel="learning rate", ylabel="training loss", title=f"Learning-rate range test, stage {stage}"
    )
    # The diverging tail would flatten the curve: the axis ends a little above where the smoothed loss started.
    lowest = int(np.argmin(result.smoothed))
    top = 1.3 * max(result.smoothed[: lowest + 1])
    ax.set_ylim(0.9 * min(min(result.losses[: lowest + 1]), result.smoothed[lowest]), top)
    ax.legend()
    fig.tight_layout()
    plot_path = output_dir / LR_FIND_PLOT
    fig.savefig(plot_path, dpi=120)
    plt.close(fig)
    return json_path, plot_path


def suggested_flag(result: RangeTest, stage: int) -> str:
    """The ``train.py`` flag to use: the steepest descent's rate, for the probed stage (in bench/tune.py it lay
    ×1.15 from the best trial's rate, the valley ×0.009: BENCHMARKS.md)."""
    name = "learning_rate" if stage == 1 else "stage2_learning_rate"
    return f"--{name} {result.steepest:.2e}"
