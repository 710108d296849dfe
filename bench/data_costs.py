"""The data path alone, CPU ms per image on one thread (``bench/run.py``'s ``data_cpu_ms_per_image``): the training
paths of the run, lighter variants of our recipe (measured, never used), the split of ``--color_jitter_on_device``
and the peer's recipe, side by side on the same images, interleaved over ``REPEATS`` passes (medians kept), so that
a shared machine's changing load falls on every path alike.

The lighter variants say what the target of a third of the peer's cost would take; the recipe stays as it is.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import datasets
import torch

from bench.timing import data_cpu_ms, synchronize
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.batch_color import build_batch_color_jitter
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import BatchTransform, build_train_transform

REPEATS = 7
# Our decoded-once path with the recipe changed, to measure what a lighter one would save: name -> (what changes,
# TransformArguments overrides). "geometry_only" is what the workers do with --color_jitter_on_device (a GPU host).
_NO_JITTER = {"color_jitter": 0.0, "hue_jitter": 0.0}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "geometry_only": ("--color_jitter_on_device: the workers crop, flip, rotate", {"color_jitter_on_device": True}),
    "no_rotate": ("lighter: no rotation", {"rotate_prob": 0.0}),
    "no_jitter": ("lighter: no colour jitter", _NO_JITTER),
    "crop_flip": ("lighter: crop and flip only (the peer's)", {"rotate_prob": 0.0, **_NO_JITTER}),
    "bilinear": ("lighter: bilinear crop and rotation (not bicubic)", {"interpolation": "bilinear"}),
}


def variant_splits(train: datasets.Dataset, prep: Preprocessing) -> dict[str, datasets.Dataset]:
    """The decoded-once training split with each of ``VARIANTS``' transforms attached (uint8 out, as ``ours``).

    Args:
        train: the decoded-once training split.
        prep: the model's input contract.
    """
    splits = {}
    for name, (_, overrides) in VARIANTS.items():
        aug = TransformArguments(**{k: v for k, v in overrides.items() if k != "interpolation"})
        variant_prep = dataclasses.replace(prep, interpolation=overrides.get("interpolation", prep.interpolation))
        transform = build_train_transform(variant_prep, aug, seed=0, normalize=False)
        splits[name] = train.with_transform(BatchTransform(transform))
    return splits


def pil_read_split(train: datasets.Dataset, prep: Preprocessing) -> datasets.Dataset:
    """Our path as it read the decoded copy until 2026-12-05: each stored image decoded by ``datasets`` into a PIL
    image, then the same training transform.

    Args:
        train: the decoded-once training split.
        prep: the model's input contract.
    """
    decoded = train.cast_column("image", datasets.Image())
    return decoded.with_transform(BatchTransform(build_train_transform(prep, seed=0, normalize=False)))


def data_costs(splits: dict[str, datasets.Dataset], images: int, repeats: int = REPEATS) -> dict[str, float]:
    """CPU ms per image of each split's transform over its first ``images`` images, one torch thread; each path
    once per pass, ``repeats`` passes, the median kept (the first pass warms every path up alike).

    Args:
        splits: each path's training split, its transform attached.
        images: images per measurement.
        repeats: passes over all the paths.
    """
    measured: dict[str, list[float]] = {name: [] for name in splits}
    for _ in range(repeats):
        for name, split in splits.items():
            measured[name].append(data_cpu_ms(split, images))
    return {name: round(statistics.median(values), 3) for name, values in measured.items()}


def device_jitter_ms(prep: Preprocessing, device: str, images: int, repeats: int = REPEATS) -> float:
    """Milliseconds per image of ``--color_jitter_on_device``'s batch jitter (the default strengths) on a batch of
    ``images`` uint8 images at the input size: CPU time on one thread on a CPU, wall time on a GPU.

    Args:
        prep: the model's input contract (its input size).
        device: ``cpu`` or ``cuda``.
        images: the batch size.
        repeats: timed calls, after one untimed; the median kept.
    """
    jitter = build_batch_color_jitter(TransformArguments(color_jitter_on_device=True))
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 3, *prep.input_size), dtype=torch.uint8, generator=generator).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        jitter(pixels, generator)
        times = [_timed(lambda: jitter(pixels, generator), device) for _ in range(repeats)]
    finally:
        torch.set_num_threads(threads)
    return round(statistics.median(times) * 1000 / images, 3)


def _timed(function: Callable[[], Any], device: str) -> float:
    clock = time.perf_counter if device == "cuda" else time.process_time  # a GPU's work is not this process's CPU
    synchronize(device)
    start = clock()
    function()
    synchronize(device)
    return clock() - start
