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
- ``data_cpu_ms_per_image``: the CPU cost per image of each data path alone, one thread, including ``before``:
  the originals decoded every epoch and normalised in the workers, ``train.py``'s path until 2026-12-01;
- ``train_ceiling_img_s``: a plain PyTorch loop over batches already in memory, the limit a data path can approach;
- ``peer_img_s``: the recipe of transformers' ``run_image_classification.py``: torchvision transforms per batch in
  ``with_transform``, a plain ``Trainer``, default DataLoader settings (no workers);
- ``infer_ms_p50``/``p95``: ``ImageClassifier.predict`` on a JPEG path, as the demo calls it, decoding included;
  ``infer_ceiling_ms_p50``/``p95``: the bare forward of the same model on a ready tensor;
- ``onnx_infer_*``, ``onnx_int8_infer_*``: the same with ``backend="onnx"`` and ``"onnx-int8"``, the model exported
  and quantized as ``python -m flowers_hf.export`` does it (``--onnx``, on by default; CPU only);
- ``probe_wall_s``, ``probe_wall_s_before`` (``--probe``): the ResNet18 linear-probe recipe end to end with
  ``train.py``, on the frozen backbone's features computed once and on the whole model every time, with their test
  accuracies (``bench/probe.py``).

Training throughput is steady state: images of the steps after ``--warmup_steps``, divided by their wall time.
The table goes to stdout, then, as the last line, one JSON object; logs and progress bars go to stderr. With
several models each runs in a fresh process, so that its memory peak is its own.

This file holds the arguments and the order of the measurements; ``bench/timing.py`` the measurement helpers (time
stamps, rates, percentiles, memory peaks), ``bench/peer.py`` the peer recipe, ``bench/tables.py`` the targets, their
checks and the printed table.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from flowers_hf.core.cli import setup_logging
from flowers_hf.data import label_counts, load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.cache import cache_resized, cached_side
from flowers_hf.data.images import open_image
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, with_transforms
from flowers_hf.export.onnx import calibration_batches, export_onnx, quantize_int8
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.onnx_backend import ONNX_DIR, ONNX_FILES
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.loss import class_weights_from_counts
from flowers_hf.training.trainer import build_trainer

if __name__ == "__main__":  # python bench/run.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import BenchArguments
from bench.peer import PeerTransform, measure_peer
from bench.probe import time_probe
from bench.tables import PATHS, cpu_key, format_table, target_checks
from bench.timing import (
    data_cpu_ms,
    machine,
    milliseconds,
    peak_rss_mb,
    percentile,
    rates,
    stamp,
    synchronize,
    timed_train,
)

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
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
# The demo's latency keys per backend: PyTorch eager's as they were, the ONNX exports' prefixed (onnx_infer_ms_p50, …).
INFER_PREFIXES = {"pytorch": "", "onnx": "onnx_", "onnx-int8": "onnx_int8_"}
CALIBRATION_IMAGES = 64
# The reference recipes of the README, timed end to end on 1,020 Flowers-sized training images (--recipes).
RECIPES = {
    "resnet18 linear probe, 20 epochs": "configs/resnet18.yaml",
    "efficientnet_b3 8 + 5 epochs": "configs/efficientnet_b3.yaml",
}


# ---------------------------------------------------------------------------------------------------------------
# Data and model


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


def fresh_model(args: BenchArguments, name: str, class_names: list[str]) -> torch.nn.Module:
    """The same randomly initialised classifier for every path (throughput does not depend on the weights)."""
    set_seed(0)
    model = build_model(ModelArguments(model=name, pretrained=False), class_names)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Training: the ceiling and our path (the peer recipe is in bench/peer.py)


def ours_arguments(args: BenchArguments, steps: int, output_dir: str) -> FlowersTrainingArguments:
    """``train.py``'s training arguments (workers and pinned memory as it sets them), no evaluation."""
    workers = {} if args.workers is None else {"dataloader_num_workers": args.workers}
    return FlowersTrainingArguments(
        output_dir=output_dir,
        max_steps=args.warmup_steps + steps,
        per_device_train_batch_size=args.batch_size,
        precision=args.precision,
        use_cpu=args.device == "cpu",
        torch_compile=args.compile,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
        report_to="none",
        seed=0,
        **workers,
    )


def measure_ceiling(
    args: BenchArguments,
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],  # collated: pixel_values, labels
    steps: int,
    training_args: TrainingArguments,
) -> tuple[float, float]:
    """Images/s and CPU ms per image of a plain loop over batches already on the device, with the optimizer
    ``training_args`` give the Trainer, the same precision and gradient clipping: the step without a data path."""
    device = torch.device(args.device)
    model.to(device).train()
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args)
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    scaler = torch.amp.GradScaler(args.device, enabled=args.precision == "fp16")
    forward = torch.compile(model) if args.compile else model
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    batches = [
        (batch["pixel_values"].to(device, memory_format=memory_format), batch["labels"].to(device)) for batch in batches
    ]
    total = args.warmup_steps + steps
    stamps = {}
    for step in tqdm(range(1, total + 1), desc="ceiling (plain loop)", leave=False):
        pixel_values, labels = batches[step % len(batches)]
        with autocast(args):
            logits = forward(pixel_values=pixel_values).logits
        scaler.scale(F.cross_entropy(logits.float(), labels)).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if step in (args.warmup_steps, total):
            stamps[step] = stamp(args.device)
    return rates(stamps, args.warmup_steps, total, args.batch_size)


def autocast(args: BenchArguments) -> contextlib.AbstractContextManager[Any]:
    """The mixed-precision context the Trainer uses for ``--precision`` (none for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    return torch.autocast(args.device, dtype=dtype) if dtype else contextlib.nullcontext()


def measure_ours(
    args: BenchArguments,
    model: torch.nn.Module,
    data: datasets.DatasetDict,
    class_weights: torch.Tensor | None,
    training_args: FlowersTrainingArguments,
    prep: Preprocessing,
) -> tuple[float, float]:
    """Images/s and CPU ms per image of ``train.py``'s path: ``build_trainer`` on the splits with
    ``with_transforms`` attached (uint8 batches normalised on the device with ``prep``)."""
    trainer = build_trainer(training_args, model, data["train"], data["validation"], class_weights, prep=prep)
    return timed_train(trainer, args.warmup_steps)


# ---------------------------------------------------------------------------------------------------------------
# Inference


def measure_infer(
    args: BenchArguments,
    model: torch.nn.Module,
    prep: Preprocessing,
    photo: bytes,
    folder: Path,
    calibration: datasets.Dataset,
) -> dict[str, float]:
    """Milliseconds of the demo's ``ImageClassifier.predict`` on a JPEG path and of the bare forward on a ready
    tensor, fp32 as the demo runs, for PyTorch eager and (``--onnx``, on a CPU) the ONNX fp32 and int8 exports; every
    backend's two timings in turn, so that all of them see the same load."""
    save_model(model, folder, prep)
    classifiers = {"pytorch": ImageClassifier.from_pretrained(folder, device=args.device)}
    if args.onnx and args.device == "cpu":
        export_onnx_models(classifiers["pytorch"], folder, calibration)
        classifiers |= {backend: ImageClassifier.from_pretrained(folder, backend=backend) for backend in ONNX_FILES}
    path = folder / "photo.jpg"
    path.write_bytes(photo)
    tensor = classifiers["pytorch"].preprocess(open_image(path))[None].to(args.device)

    times: dict[str, tuple[list[float], list[float]]] = {backend: ([], []) for backend in classifiers}
    for run in tqdm(range(-5, args.infer_runs), desc="inference", leave=False):  # 5 untimed warm-up runs
        for backend, classifier in classifiers.items():
            demo_ms = milliseconds(partial(classifier.predict, path))  # ends on .cpu(): no synchronize needed
            bare_ms = milliseconds(partial(bare_forward, classifier, tensor, args.device))
            if run >= 0:
                times[backend][0].append(demo_ms)
                times[backend][1].append(bare_ms)
    return {
        f"{INFER_PREFIXES[backend]}{key}": percentile(values, q)
        for backend, (demo, ceiling) in times.items()
        for key, values, q in (
            ("infer_ms_p50", demo, 50),
            ("infer_ms_p95", demo, 95),
            ("infer_ceiling_ms_p50", ceiling, 50),
            ("infer_ceiling_ms_p95", ceiling, 95),
        )
    }


@torch.inference_mode()
def bare_forward(classifier: ImageClassifier, tensor: torch.Tensor, device: str) -> None:
    """The model alone on a ready batch, as the demo's ``predict`` runs it."""
    classifier.model(tensor)
    synchronize(device)


def export_onnx_models(classifier: ImageClassifier, folder: Path, calibration: datasets.Dataset) -> None:
    """``onnx/model.onnx`` and ``onnx/model_int8.onnx`` in ``folder``, with ``python -m flowers_hf.export``'s code:
    int8 calibrated on the first ``CALIBRATION_IMAGES`` of ``calibration`` through the eval pipeline."""
    fp32 = folder / ONNX_DIR / ONNX_FILES["onnx"]
    export_onnx(classifier.model, fp32, classifier.prep.input_size)
    batches = calibration_batches(calibration, build_eval_transform(classifier.prep), CALIBRATION_IMAGES)
    settings = quantize_int8(fp32, folder / ONNX_DIR / ONNX_FILES["onnx-int8"], "auto", batches)
    logger.info("ONNX exports of the benchmark model: fp32 and int8 (%s)", settings)


# ---------------------------------------------------------------------------------------------------------------
# One model: every measurement


def bench_model(args: BenchArguments, name: str) -> dict[str, Any]:
    """Every figure for one model, in this process: the data paths' CPU cost per image, the training paths
    (``--rounds`` times, interleaved, medians kept), then inference; the memory peaks last."""
    steps = args.steps_for(name)
    data = load_pool(args, images_needed=(args.warmup_steps + steps) * args.batch_size)
    prep = resolve_preprocessing(name, TransformArguments(image_size=args.image_size))
    logger.info("%s at %d px, batch %d, %s: %d + %d steps per training path", name, prep.input_size[0],
                args.batch_size, args.precision, args.warmup_steps, steps)  # fmt: skip
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
    costs = {path: round(data_cpu_ms(splits["train"], args.batch_size), 2) for path, splits in inputs.items()}
    logger.info("Data path CPU ms per image, one thread: %s", costs)
    with tempfile.TemporaryDirectory(prefix="flowers_bench_") as tmp:
        training_args = ours_arguments(args, steps, tmp)
        training = train_rounds(args, name, inputs, prep, training_args)
        # Saved as the demo loads it: safetensors takes contiguous weights only (not channels_last ones).
        model = fresh_model(args, name, data["train"].features["label"].names).cpu()
        model = model.to(memory_format=torch.contiguous_format)
        infer = measure_infer(args, model, prep, first_photo(data["train"]), Path(tmp) / "model", data["validation"])
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
        **peak_rss_mb(),
    }
    if args.rounds > 1:
        result["per_round"] = {key: [round(value, 2) for value in values] for key, values in training.items()}
    return result


def train_rounds(
    args: BenchArguments,
    name: str,
    inputs: dict[str, datasets.DatasetDict],
    prep: Preprocessing,
    training_args: FlowersTrainingArguments,
) -> dict[str, list[float]]:
    """Images/s and CPU ms per image of every training path in ``PATHS``, each round running all of them in turn on
    a fresh model."""
    ours, cached, peer = inputs["ours"], inputs["cached"], inputs["peer"]
    class_names = ours["train"].features["label"].names
    weights = class_weights_from_counts(label_counts(ours["train"], len(class_names)), "balanced")
    steps = training_args.max_steps - args.warmup_steps
    batches = [ours["train"][k * args.batch_size : (k + 1) * args.batch_size] for k in range(2)]
    paths = {
        "train_ceiling_img_s": lambda model: measure_ceiling(args, model, batches, steps, training_args),
        "train_pipeline_img_s": lambda model: measure_ours(args, model, ours, weights, training_args, prep),
        "train_pipeline_cached_img_s": lambda model: measure_ours(args, model, cached, weights, training_args, prep),
        "peer_img_s": lambda model: measure_peer(args, model, peer["train"], steps, training_args.output_dir),
    }
    figures: dict[str, list[float]] = {key: [] for path in PATHS for key in (path, cpu_key(path))}
    for round_ in range(1, args.rounds + 1):
        for key, measure in paths.items():
            logger.info("Round %d/%d: %s", round_, args.rounds, PATHS[key])
            images_per_second, cpu_ms = measure(fresh_model(args, name, class_names))
            figures[key].append(images_per_second)
            figures[cpu_key(key)].append(cpu_ms)
            logger.info("%s: %.2f images/s, %.1f CPU ms per image", PATHS[key], images_per_second, cpu_ms)
    return figures


def cache_processes(data: datasets.DatasetDict) -> int | None:
    """Processes that build the resized copy: every core for large pools, else one (start-up costs more)."""
    return os.cpu_count() if len(data["train"]) >= 2000 and (os.cpu_count() or 1) > 1 else None


def first_photo(split: datasets.Dataset) -> bytes:
    """The encoded bytes of the split's first image, as they would lie in a file."""
    return split.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]


def bench_in_child(argv: list[str], name: str) -> dict[str, Any]:
    """``bench_model`` for one model in a fresh process, so that its memory peak and warm-up are its own."""
    # argparse: the last value of a flag wins
    overrides = ["--models", name, "--json_only", "--recipes", "false", "--probe", "false"]
    command = [sys.executable, str(Path(__file__).resolve()), *argv, *overrides]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # logs and progress pass through
    return json.loads(done.stdout.strip().splitlines()[-1])["runs"][0]


# ---------------------------------------------------------------------------------------------------------------
# The reference recipes (--recipes)


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


# ---------------------------------------------------------------------------------------------------------------
# Entry point


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
