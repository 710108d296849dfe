"""The measurement helpers of ``bench/run.py``: wall and CPU time stamps around training steps, steady-state rates,
milliseconds and percentiles of single calls, memory peaks, a data path's CPU cost, and the machine's description.

Nothing here logs or prints; ``bench/run.py`` decides what is measured and reports it.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import psutil
import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a time stamp covers it."""
    if device == "cuda":
        torch.cuda.synchronize()


Stamp = tuple[float, float]  # (wall seconds, CPU seconds of this process and its DataLoader workers)


def stamp(device: str) -> Stamp:
    """Wall and CPU time now, once queued GPU work is done. CPU time counts every thread of this process and of
    its live children (the workers), so that a path's CPU cost per image can be compared across a shared machine's
    changing load, where wall time cannot."""
    synchronize(device)
    cpu = time.process_time()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a worker that just ended
            times = child.cpu_times()
            cpu += times.user + times.system
    return time.perf_counter(), cpu


def rates(stamps: dict[int, Stamp], first: int, last: int, batch_size: int) -> tuple[float, float]:
    """Steady-state images/s and CPU ms per image over steps ``first + 1 … last``, from their stamps."""
    images = (last - first) * batch_size
    (wall_first, cpu_first), (wall_last, cpu_last) = stamps[first], stamps[last]
    return images / (wall_last - wall_first), (cpu_last - cpu_first) * 1000 / images


class StepClock(TrainerCallback):
    """Stamps at the end of the last warm-up step and of the last step of a Trainer run."""

    def __init__(self, warmup_steps: int, device: str) -> None:
        self.warmup_steps = warmup_steps
        self.device = device
        self.stamps: dict[int, Stamp] = {}

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step in (self.warmup_steps, state.max_steps):
            self.stamps[state.global_step] = stamp(self.device)


class StepTimes(TrainerCallback):
    """Stamps at the start of the first step and at the end of every step of a Trainer run."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.stamps: list[Stamp] = []

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.stamps:
            self.stamps.append(stamp(self.device))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.stamps.append(stamp(self.device))


def timed_train(trainer: Trainer, warmup_steps: int) -> tuple[float, float]:
    """Train for ``max_steps``; images/s and CPU ms per image after ``warmup_steps``. The workers end with it."""
    args = trainer.args
    clock = StepClock(warmup_steps, args.device.type)
    trainer.add_callback(clock)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its final logs; stdout is for the results
        trainer.train()
    del trainer
    gc.collect()  # ends persistent workers, so that their memory peak reaches RUSAGE_CHILDREN
    return rates(clock.stamps, warmup_steps, args.max_steps, args.per_device_train_batch_size)


def milliseconds(function: Callable[[], None]) -> float:
    """Wall milliseconds of one call of ``function``."""
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile, interpolated linearly between the nearest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest child (the DataLoader workers, once ended).

    Linux reports ``ru_maxrss`` in KiB. Forked workers share the parent's pages copy-on-write, which both figures
    count, so their sum overstates the total.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_worker_mb": round(children, 1)}


def data_cpu_ms(split: datasets.Dataset, images: int) -> float:
    """CPU milliseconds per image a data path spends (reading, decoding, transforming) on ``images`` images, with
    one torch thread as in a DataLoader worker: on a CPU this work competes with the model for the same cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        split[:images]
        return (time.process_time() - start) * 1000 / images
    finally:
        torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        cpuinfo = Path("/proc/cpuinfo")
        lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
        name = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
        )
    return {
        "name": name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
