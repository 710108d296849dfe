"""Training throughput against the model-only ceiling and the peer recipe, demo latency and memory, in one run.

    python bench/run.py --quick                                        # ResNet18, small images, under 5 min on 2 cores
    python bench/run.py                                                # ResNet18 at 224 px, EfficientNet-B3 at 288 px
    python bench/run.py --device cuda --precision bf16 --channels_last --recipes     # a GPU: also the reference recipes
    python bench/run.py --models resnet18 --image_size 64 --steps 3   # any subset, sizes and step counts
    python bench/run.py --probe --probe_backbone runs/quickstart/model.safetensors   # also the linear probe's wall time

Every measurement runs on the synthetic set drawn like Flowers-102 photographs (JPEG, shorter side 500 px, cached
by ``datasets`` after the first run; drawing them is not timed). For each model, on the same machine and with the
same model, batch size and precision:

- ``train_pipeline_img_s``: our training path as ``train.py`` runs it: the training images decoded and shrunk once
  beforehand (``flowers_hf.data.cache``: shorter side 1.15 x the input size, stored uncompressed), on-the-fly
  Albumentations in DataLoader workers returning uint8 tensors, normalised on the device by ``build_trainer``'s
  Trainer, its step;
- ``train_pipeline_cached_img_s``: the same with the normalisation in the workers (float batches);
- ``data_cpu_ms_per_image``: the CPU cost per image of each data path alone, one thread, side by side on the same
  images (``bench/data_costs.py``): the paths above, ``before`` (the originals decoded every epoch and normalised in
  the workers, ``train.py``'s path until 2026-12-01), the workers' share with ``--color_jitter_on_device`` and
  lighter variants of the recipe (measured only); ``data_ours_cpu_ms`` / ``data_peer_cpu_ms`` is checked against
  its target (a third); ``device_jitter_ms_per_image``: that flag's batch jitter on the device;
- ``train_ceiling_img_s``: a plain PyTorch loop over batches already in memory, the limit a data path can approach;
- ``peer_img_s``: the recipe of transformers' ``run_image_classification.py``: torchvision transforms per batch in
  ``with_transform``, a plain ``Trainer``, default DataLoader settings (no workers);
- ``infer_ms_p50``/``p95``: ``ImageClassifier.predict`` on a JPEG path, as the demo calls it, decoding included;
  ``phone_infer_ms_p50``/``p95``: the same on a phone's 12-MP JPEG (``--phone_side``); ``infer_ceiling_ms_p50``/``p95``:
  the bare forward of the same model on a ready tensor; the int8 click step by step (``photo_open_ms_p50``, …) and as it
  ran before (``photo_before_ms_p50``): ``bench/inference.py``, which also runs alone;
- ``onnx_infer_*``, ``onnx_int8_infer_*``: the same with ``backend="onnx"`` and ``"onnx-int8"``, the model exported
  and quantized as ``python -m flowers_hf.export`` does it (``--onnx``, on by default; CPU only);
- ``probe_wall_s``, ``probe_wall_s_before`` (``--probe``): the ResNet18 linear-probe recipe end to end with
  ``train.py``, on the frozen backbone's features computed once and on the whole model every time, with their test
  accuracies (``bench/probe.py``).

Training throughput is steady state: images of the steps after ``--warmup_steps``, divided by their wall time.
The table goes to stdout, then, as the last line, one JSON object; logs and progress bars go to stderr. With
several models each runs in a fresh process, so that its memory peak is its own.

This file holds the order of the measurements and the JSON summary; ``bench/arguments.py`` the arguments,
``bench/measure.py`` every figure of one model, ``bench/training.py`` the ceiling and our training path,
``bench/peer.py`` the peer recipe, ``bench/data_costs.py`` the data paths alone, ``bench/inference.py`` the demo's
latency on each backend (the ONNX exports too), ``bench/recipes.py`` and ``bench/probe.py`` the end-to-end timings
of ``train.py``, ``bench/timing.py`` the measurement helpers (time stamps, rates, percentiles, memory peaks),
``bench/tables.py`` the targets, their checks and the printed table.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging

if __name__ == "__main__":  # python bench/run.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import BenchArguments
from bench.measure import bench_model
from bench.probe import time_probe
from bench.recipes import time_recipes
from bench.tables import format_table, target_checks
from bench.timing import machine

REQUIRED_KEYS = (
    "train_pipeline_img_s",
    "train_ceiling_img_s",
    "peer_img_s",
    "infer_ms_p50",
    "infer_ms_p95",
    "infer_ceiling_ms_p50",
    "peak_rss_mb",
    "device",
    "model",
    "image_size",
    "batch_size",
    "workers",
)


def bench_in_child(argv: list[str], name: str) -> dict[str, Any]:
    """``bench_model`` for one model in a fresh process, so that its memory peak and warm-up are its own."""
    # argparse: the last value of a flag wins
    overrides = ["--models", name, "--json_only", "--recipes", "false", "--probe", "false"]
    command = [sys.executable, str(Path(__file__).resolve()), *argv, *overrides]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # logs and progress pass through
    return json.loads(done.stdout.strip().splitlines()[-1])["runs"][0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    start, load_start = time.perf_counter(), os.getloadavg()[0]

    # Each model: in this process when it is the only one, else one fresh process per model; none with
    # --models none (the recipes or the probe alone).
    names = [] if args.models == ["none"] else args.models
    runs = [bench_model(args, names[0])] if len(names) == 1 else [bench_in_child(argv, name) for name in names]
    for run in runs:
        run["targets"] = target_checks(run)
    recipes = time_recipes(args) if args.recipes else None
    probe = time_probe(args) if args.probe else {}

    # The table, then the JSON on the last line: the first model's figures at the top level, every model's in runs.
    summary = {
        "device": args.device,
        **(runs[0] if runs else {}),
        "runs": runs,
        "recipes": recipes,
        **probe,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "bench/run.py", *argv]),
        "wall_s": round(time.perf_counter() - start, 1),
        "load_average": [load_start, os.getloadavg()[0]],
        "arguments": asdict(args),
    }
    if not args.json_only:
        print(format_table(summary))
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
