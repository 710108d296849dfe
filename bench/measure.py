"""Every figure of ``bench/run.py`` for one model, in this process: the synthetic photos, the data paths' CPU cost
per image, the training paths (``bench/training.py``, ``bench/peer.py``), the demo's latency
(``bench/inference.py``) and the memory peaks."""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch

from bench.arguments import BenchArguments
from bench.data_costs import data_costs, device_jitter_ms, pil_read_split, variant_splits
from bench.inference import CALIBRATION_IMAGES, measure_infer
from bench.peer import PeerTransform
from bench.photos import phone_jpeg
from bench.timing import peak_rss_mb
from bench.training import fresh_model, ours_arguments, train_rounds
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.cache import cache_resized, cached_side
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, with_transforms
from flowers_hf.export.onnx import calibration_batches

logger = logging.getLogger("bench")


def load_pool(args: BenchArguments, images_needed: int) -> datasets.DatasetDict:
    """The synthetic photos, every split pooled as ``train`` (all images are alike here); ``validation`` as drawn.

    Args:
        args: the data options.
        images_needed: images the timed training runs read; more are drawn if ``--images_per_class`` gives fewer,
            so that no epoch ends (with its partial batch and worker restart) inside a measurement.
    """
    images_per_class = max(args.images_per_class, math.ceil(images_needed / args.num_classes))
    data_args = DataArguments(
        dataset="synthetic",
        synthetic_num_classes=args.num_classes,
        synthetic_images_per_class=images_per_class,
        synthetic_image_size=args.source_image_size,
        synthetic_image_format="jpeg",
        cache_dir=args.cache_dir,
    )
    start = time.perf_counter()
    raw = load_data("synthetic", data_args).splits
    logger.info(
        "Data: %d JPEGs at %d px ready in %.1f s (not timed)",
        sum(map(len, raw.values())),
        args.source_image_size,
        time.perf_counter() - start,
    )
    pool = datasets.concatenate_datasets([raw[split] for split in raw])
    return datasets.DatasetDict({"train": pool, "validation": raw["validation"]})


def data_paths(data: datasets.DatasetDict, prep: Preprocessing) -> tuple[dict[str, datasets.DatasetDict], int, float]:
    """The splits with each data path's transforms attached (``ours``, ``cached``, ``before``, ``peer``), the
    shorter side of the resized copy the first two read, and the seconds that copy took to build."""
    side, start = cached_side(prep), time.perf_counter()
    cached = datasets.DatasetDict({**data, "train": cache_resized(data["train"], side, num_proc=cache_processes(data))})
    cache_build_s = time.perf_counter() - start  # ~0 once datasets holds the copy from an earlier run
    inputs = {
        "ours": with_transforms(
            cached, build_train_transform(prep, seed=0, normalize=False), build_eval_transform(prep, normalize=False)
        ),
        "cached": with_transforms(cached, build_train_transform(prep, seed=0), build_eval_transform(prep)),
        "before": with_transforms(data, build_train_transform(prep, seed=0), build_eval_transform(prep)),
        "peer": datasets.DatasetDict({"train": data["train"].with_transform(PeerTransform(prep))}),
    }
    return inputs, side, cache_build_s


def bench_model(args: BenchArguments, name: str) -> dict[str, Any]:
    """Every figure for one model, in this process: the data paths' CPU cost per image, the training paths
    (``--rounds`` times, interleaved, medians kept), then inference; the memory peaks last."""
    steps = args.steps_for(name)
    data = load_pool(args, images_needed=(args.warmup_steps + steps) * args.batch_size)
    prep = resolve_preprocessing(name, TransformArguments(image_size=args.image_size))
    logger.info("%s at %d px, batch %d, %s: %d + %d steps per training path", name, prep.input_size[0],
                args.batch_size, args.precision, args.warmup_steps, steps)  # fmt: skip
    inputs, side, cache_build_s = data_paths(data, prep)
    paths = {path: splits["train"] for path, splits in inputs.items()}
    paths["pil_read"] = pil_read_split(inputs["ours"]["train"], prep)
    images = min(2 * args.batch_size, len(data["train"]))  # two batches' worth, the same images for every path
    costs = data_costs(paths | variant_splits(inputs["ours"]["train"], prep), images)
    jitter_ms = device_jitter_ms(prep, args.device, args.batch_size)
    logger.info("Data path CPU ms per image, one thread: %s; the batch jitter %.3f ms", costs, jitter_ms)
    with tempfile.TemporaryDirectory(prefix="flowers_bench_") as tmp:
        training_args = ours_arguments(args, steps, tmp)
        training = train_rounds(args, name, inputs, prep, training_args)
        # Saved as the demo loads it: safetensors takes contiguous weights only (not channels_last ones).
        model = fresh_model(args, name, data["train"].features["label"].names).cpu()
        model = model.to(memory_format=torch.contiguous_format)
        photos = {"photo": first_photo(data["train"]), "phone": phone_jpeg(args.phone_side)}
        calibration = calibration_batches(data["validation"], build_eval_transform(prep), CALIBRATION_IMAGES)
        infer = measure_infer(args, model, prep, photos, Path(tmp) / "model", calibration)
    result = {
        "model": name,
        "image_size": prep.input_size[0],
        "source_image_size": args.source_image_size,
        "batch_size": args.batch_size,
        "workers": training_args.dataloader_num_workers,
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "warmup_steps": args.warmup_steps,
        "steps": steps,
        "rounds": args.rounds,
        "cache_side": side,
        "cache_build_s": round(cache_build_s, 1),
        **{key: round(statistics.median(values), 2) for key, values in training.items()},
        **{key: round(value, 2) for key, value in infer.items()},
        "data_cpu_ms_per_image": costs,
        "data_ours_cpu_ms": costs["ours"],
        "data_peer_cpu_ms": costs["peer"],
        "device_jitter_ms_per_image": jitter_ms,
        **peak_rss_mb(),
    }
    if args.rounds > 1:
        result["per_round"] = {key: [round(value, 2) for value in values] for key, values in training.items()}
    return result


def cache_processes(data: datasets.DatasetDict) -> int | None:
    """Processes that build the resized copy: every core for large pools, else one (start-up costs more)."""
    return os.cpu_count() if len(data["train"]) >= 2000 and (os.cpu_count() or 1) > 1 else None


def first_photo(split: datasets.Dataset) -> bytes:
    """The encoded bytes of the split's first image, as they would lie in a file."""
    return split.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
