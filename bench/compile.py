"""``--torch_compile`` against eager on ``train.py``'s training path: what compiling costs and what it saves.

    python bench/compile.py --models resnet18 --image_size 64 --steps 10           # this CPU (BENCHMARKS.md)
    python bench/compile.py --models resnet18 --device cuda --precision bf16 --channels_last   # bench/gpu_check.sh

One process trains the same fresh model twice with ``build_trainer``'s Trainer on the decoded-once synthetic photos
(``bench/run.py``'s data and arguments): eager first, then with ``torch_compile`` and inductor's and Triton's caches
empty, as on a user's first run. From the time of every step:

- ``step_ms``: the median step after the ``--warmup_steps`` (the steady state), and its CPU time per step;
- ``compile_s``: the extra time of the compiled run's warm-up steps over its steady state, less the eager run's
  (its own first-step costs): the compilation;
- ``break_even_steps``: ``compile_s`` over the steady-state saving per step, the steps a run needs before
  compiling pays (none when the compiled step is not faster);
- ``training_loss``: the two runs' mean loss over the same batches, which should agree.

The table goes to stdout, then, as the last line, one JSON object; logs go to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
from transformers import HfArgumentParser

if __name__ == "__main__":  # python bench/compile.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import BenchArguments
from bench.measure import data_paths, load_pool
from bench.timing import StepTimes, machine
from bench.training import fresh_model, ours_arguments
from flowers_hf.core.cli import setup_logging
from flowers_hf.data import label_counts
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.training.loss import class_weights_from_counts
from flowers_hf.training.trainer import build_trainer


def timed_run(
    args: BenchArguments, name: str, data: datasets.DatasetDict, prep: Preprocessing, output_dir: str
) -> dict[str, float]:
    """One training run of ``--warmup_steps`` + ``--steps`` steps (compiled if ``args.compile``): its warm-up
    wall time, steady-state step, CPU time per step and mean training loss."""
    class_names = data["train"].features["label"].names
    weights = class_weights_from_counts(label_counts(data["train"], len(class_names)), "balanced")
    steps = args.steps_for(name)
    trainer = build_trainer(
        ours_arguments(args, steps, output_dir), fresh_model(args, name, class_names), data["train"],
        data["validation"], weights, prep=prep,
    )  # fmt: skip
    clock = StepTimes(args.device)
    trainer.add_callback(clock)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its final logs; stdout is for the results
        loss = trainer.train().training_loss
    walls = [wall for wall, _ in clock.stamps]
    warm = args.warmup_steps
    steady = statistics.median(later - earlier for earlier, later in itertools.pairwise(walls[warm:]))
    cpu = (clock.stamps[-1][1] - clock.stamps[warm][1]) / steps
    return {
        "warmup_s": round(walls[warm] - walls[0], 2),
        "step_ms": round(steady * 1000, 2),
        "cpu_s_per_step": round(cpu, 3),
        "training_loss": round(loss, 5),
        "overhead_s": walls[warm] - walls[0] - warm * steady,  # the warm-up's time beyond steady-state steps
    }


def compare(args: BenchArguments, name: str) -> dict[str, Any]:
    """Eager, then compiled with empty compile caches, on the same data and fresh model; their figures."""
    steps = args.steps_for(name)
    data = load_pool(args, images_needed=(args.warmup_steps + steps) * args.batch_size)
    prep = resolve_preprocessing(name, TransformArguments(image_size=args.image_size))
    ours = data_paths(data, prep)[0]["ours"]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="flowers_compile_") as tmp:
        # Read when inductor and Triton first compile: the compiled run starts cold, as a user's first one does.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        os.environ["TRITON_CACHE_DIR"] = str(Path(tmp) / "triton")
        for key, compiled in (("eager", False), ("compiled", True)):
            runs[key] = timed_run(dataclasses.replace(args, compile=compiled), name, ours, prep, tmp)
    compile_s = runs["compiled"].pop("overhead_s") - runs["eager"].pop("overhead_s")
    saving_s = (runs["eager"]["step_ms"] - runs["compiled"]["step_ms"]) / 1000
    return {
        "model": name,
        "image_size": prep.input_size[0],
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "backend": args.compile_backend,
        "warmup_steps": args.warmup_steps,
        "steps": steps,
        **runs,
        "compile_s": round(compile_s, 1),
        "speedup": round(runs["eager"]["step_ms"] / runs["compiled"]["step_ms"], 3),
        "break_even_steps": round(compile_s / saving_s) if saving_s > 0 else None,
    }


def format_table(result: dict[str, Any]) -> str:
    """The two runs side by side, and what compiling cost and saved."""
    lines = [
        f"--torch_compile on {result['model']} at {result['image_size']} px, batch {result['batch_size']}, "
        f"{result['precision']}, {result['device']}, {result['backend']}: {result['warmup_steps']} warm-up + "
        f"{result['steps']} timed steps",
        f"{'':10} {'warm-up s':>10} {'step ms':>10} {'CPU s/step':>11} {'loss':>9}",
    ]
    for key in ("eager", "compiled"):
        run = result[key]
        lines.append(
            f"{key:10} {run['warmup_s']:>10} {run['step_ms']:>10} {run['cpu_s_per_step']:>11} {run['training_loss']:>9}"
        )
    pays = result["break_even_steps"]
    lines.append(
        f"compile {result['compile_s']} s; steady-state speed-up {result['speedup']}x; "
        + (f"pays off after {pays} steps" if pays is not None else "never pays off (no faster step)")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    result = compare(args, args.models[0])
    result.update(
        machine=machine(),
        date=datetime.date.today().isoformat(),
        command=shlex.join(["python", "bench/compile.py", *argv]),
        wall_s=round(time.perf_counter() - start, 1),
        load_average=[load_start, os.getloadavg()[0]],
    )
    print(format_table(result))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
