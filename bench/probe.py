"""The ResNet18 reference recipe (``configs/resnet18.yaml``: a linear probe, 20 epochs) timed end to end with
``train.py``, on the whole model every step and evaluation (``--frozen_features false``: the path until
2026-12-01) and on the frozen backbone's features computed once, side by side in one run (``bench/run.py --probe``).

The probe needs a backbone that has learnt something, or every accuracy is chance: by default the quickstart's
(``configs/quickstart.yaml``, trained here first, ~1-2 min on 2 cores; ``--probe_backbone`` reuses a saved
``model.safetensors``). The probe's data are synthetic photos drawn from other classes than the quickstart's
(``--synthetic_seed 1``), JPEGs of 500 px in Flowers-102's split proportions, 102 classes with
``--probe_images_per_class`` images each (16: 204 / 204 / 1,224, a sixth of Flowers-102's 8,189).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.arguments import BenchArguments
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.cache import cache_splits
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.training.arguments import FlowersTrainingArguments

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
PRESET = "configs/resnet18.yaml"
BACKBONE_PRESET = "configs/quickstart.yaml"
PROBE_SEED = 1  # other classes than the quickstart backbone learnt


def time_probe(args: BenchArguments) -> dict[str, Any]:
    """``probe_wall_s`` (features once, the preset's ``--probe_views``) and ``probe_wall_s_before`` (the whole
    model every time) with their test accuracies and the command of each."""
    with tempfile.TemporaryDirectory(prefix="flowers_probe_") as tmp:
        backbone = args.probe_backbone or train_backbone(args, Path(tmp) / "backbone")
        data = _data_flags(args)
        _warm_cache(args, data)  # neither timed run pays for decoding the images once
        runs = {}
        # The new path first: if the warm-up missed the cache, it is the one that pays for it.
        for key, extra in (("probe", []), ("probe_before", ["--frozen_features", "false", "--probe_views", "0"])):
            output = Path(tmp) / key
            command = [
                sys.executable, "train.py", "--config", PRESET, "--pretrained_path", str(backbone), *data,
                "--early_stopping_patience", "0", "--report_to", "none", "--output_dir", str(output), *extra,
                *(["--cache_dir", args.cache_dir] if args.cache_dir else []), *shlex.split(args.probe_flags),
            ]  # fmt: skip
            logger.info("Probe %s: %s", key, shlex.join(command))
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)  # stdout: the table, the JSON
            seconds = time.perf_counter() - start
            test = json.loads((output / "test_results.json").read_text())
            runs[key] = {"wall_s": round(seconds, 1), "test_accuracy": round(test["test_accuracy"], 4)}
            runs[key]["command"] = shlex.join(["python", *command[1:]])
            logger.info("Probe %s: %.0f s, test accuracy %.4f", key, seconds, test["test_accuracy"])
    new, before = runs["probe"], runs["probe_before"]
    return {
        "probe_wall_s": new["wall_s"],
        "probe_wall_s_before": before["wall_s"],
        "probe_test_accuracy": new["test_accuracy"],
        "probe_test_accuracy_before": before["test_accuracy"],
        "probe_wall_ratio": round(new["wall_s"] / before["wall_s"], 3),
        "probe_commands": {key: run["command"] for key, run in runs.items()},
    }


def train_backbone(args: BenchArguments, output: Path) -> Path:
    """The quickstart's model, trained from scratch (not timed): the backbone the probe starts from."""
    command = [sys.executable, "train.py", "--config", BACKBONE_PRESET, "--report_to", "none", "--output_dir",
               str(output), *(["--cache_dir", args.cache_dir] if args.cache_dir else [])]  # fmt: skip
    logger.info("Probe backbone (not timed): %s", shlex.join(command))
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)  # stdout: the table, the JSON
    return output / "model.safetensors"


def _data_flags(args: BenchArguments) -> list[str]:
    flags = [
        "--dataset", "synthetic", "--synthetic_seed", str(PROBE_SEED), "--synthetic_image_size",
        str(args.source_image_size), "--synthetic_images_per_class", str(args.probe_images_per_class),
    ]  # fmt: skip
    return flags + (["--image_size", str(args.image_size)] if args.image_size else [])


def _warm_cache(args: BenchArguments, flags: list[str]) -> None:
    """The synthetic photos and their decoded copy, made here as ``train.py`` makes them (same fingerprints), so
    that both timed runs find them in the ``datasets`` cache."""
    values = dict(zip(flags[::2], flags[1::2], strict=True))
    data_args = DataArguments(
        dataset="synthetic",
        synthetic_seed=PROBE_SEED,
        synthetic_image_size=args.source_image_size,
        synthetic_images_per_class=args.probe_images_per_class,
        cache_dir=args.cache_dir,
    )
    prep = resolve_preprocessing("resnet18.tv_in1k", TransformArguments(image_size=int(values.get("--image_size", 0))
                                                                         or None))  # fmt: skip
    workers = FlowersTrainingArguments(output_dir=None, report_to="none").dataloader_num_workers
    start = time.perf_counter()
    cache_splits(load_data(args=data_args).splits, prep, workers or None)
    logger.info("Probe data and its decoded copy ready in %.0f s (not timed)", time.perf_counter() - start)
