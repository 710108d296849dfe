"""The reference recipes of the README timed end to end with ``train.py`` (``bench/run.py --recipes``)."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transformers import HfArgumentParser

from bench.arguments import BenchArguments
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
# The reference recipes of the README, timed end to end on 1,020 Flowers-sized training images (--recipes).
RECIPES = {
    "resnet18 linear probe, 20 epochs": "configs/resnet18.yaml",
    "efficientnet_b3 8 + 5 epochs": "configs/efficientnet_b3.yaml",
}


def time_recipes(args: BenchArguments) -> dict[str, float]:
    """Wall seconds of each reference recipe, ``train.py`` end to end (every epoch: no early stopping; evaluation,
    test and reports included) on the synthetic photos at 500 px: 1,020 training images, from random init."""
    cache = [] if args.cache_dir is None else ["--cache_dir", args.cache_dir]
    # The photos drawn beforehand, untimed: the recipes' data as their flags give it.
    data_flags = ["--dataset", "synthetic", "--synthetic_image_size", "500", *cache, *shlex.split(args.recipe_flags)]
    parser = HfArgumentParser(DataArguments)
    data_args, _ = parser.parse_args_into_dataclasses(data_flags, return_remaining_strings=True)
    load_data(args=data_args)
    seconds = {}
    for name, preset in RECIPES.items():
        with tempfile.TemporaryDirectory(prefix="flowers_recipe_") as output_dir:
            command = [
                sys.executable, "train.py", "--config", preset, "--dataset", "synthetic", "--synthetic_image_size",
                "500", "--pretrained", "false", "--early_stopping_patience", "0", "--precision", args.precision,
                "--use_cpu", str(args.device == "cpu").lower(), "--torch_compile", str(args.compile).lower(),
                "--channels_last", str(args.channels_last).lower(), "--report_to", "none", "--output_dir", output_dir,
                *cache, *shlex.split(args.recipe_flags),
            ]  # fmt: skip
            logger.info("Recipe %s: %s", name, shlex.join(command))
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)  # stdout: the table, the JSON
            seconds[name] = round(time.perf_counter() - start, 1)
            logger.info("Recipe %s: %.0f s", name, seconds[name])
    return seconds
