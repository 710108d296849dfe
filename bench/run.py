"""Training throughput against the model-only ceiling and the peer recipe, demo latency and memory, in one run.

    python bench/run.py --quick                                        # ResNet18, small images, under 5 min on 2 cores
    python bench/run.py                                                # ResNet18 at 224 px, EfficientNet-B3 at 288 px
    python bench/run.py --device cuda --precision bf16 --channels_last --recipes     # a GPU: also the reference recipes
    python bench/run.py --models resnet18 --image_size 64 --steps 3   # any subset, sizes and step counts

Every measurement runs on the synthetic set drawn like Flowers-102 photographs (JPEG, shorter side 500 px, cached
by ``datasets`` after the first run; drawing them is not timed). For each model, on the same machine and with the
same model, batch size and precision:

- ``train_pipeline_img_s``: our training path as ``train.py`` runs it: ``datasets`` decoding, on-the-fly
  Albumentations in DataLoader workers, ``build_trainer``'s Trainer step;
- ``train_pipeline_cached_img_s``: the same with the training images decoded and shrunk once beforehand
  (``flowers_hf.cache``: shorter side 1.15 x the input size, stored uncompressed), which ``train.py`` does not do yet;
- ``train_ceiling_img_s``: a plain PyTorch loop over batches already in memory, the limit a data path can approach;
- ``peer_img_s``: the recipe of transformers' ``run_image_classification.py``: torchvision transforms per batch in
  ``with_transform``, a plain ``Trainer``, default DataLoader settings (no workers);
- ``infer_ms_p50``/``p95``: ``FlowerClassifier.predict`` on a JPEG path, as the demo calls it, decoding included;
  ``infer_ceiling_ms_p50``/``p95``: the bare forward of the same model on a ready tensor.

Training throughput is steady state: images of the steps after ``--warmup_steps``, divided by their wall time.
The table goes to stdout, then, as the last line, one JSON object; logs and progress bars go to stderr. With
several models each runs in a fresh process, so that its memory peak is its own.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import logging
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import psutil
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import transformers
from tqdm.auto import tqdm
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from flowers_hf.cache import cache_resized, cached_side
from flowers_hf.config import DataArguments, ModelArguments, TransformArguments
from flowers_hf.data import label_counts, load_flowers
from flowers_hf.images import open_image
from flowers_hf.inference import FlowerClassifier
from flowers_hf.modeling import build_model, save_model
from flowers_hf.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.trainer import build_trainer, class_weights_from_counts
from flowers_hf.trainer_config import FlowersTrainingArguments
from flowers_hf.transforms import with_transforms

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
# (name, numerator, denominator, ">=" or "<=", target on a CPU, target on a GPU), from the issue; "cached" is our
# path with the training images decoded and shrunk once (flowers_hf.cache), which train.py does not do yet.
TARGETS = (
    ("pipeline / ceiling", "train_pipeline_img_s", "train_ceiling_img_s", ">=", 0.95, 0.90),
    ("cached / ceiling", "train_pipeline_cached_img_s", "train_ceiling_img_s", ">=", 0.95, 0.90),
    ("ours / peer", "train_pipeline_img_s", "peer_img_s", ">=", 1.0, 1.3),
    ("cached / peer", "train_pipeline_cached_img_s", "peer_img_s", ">=", 1.0, 1.3),
    ("demo / bare forward", "infer_ms_p50", "infer_ceiling_ms_p50", "<=", 1.2, 1.2),
)
# The training paths, measured in this order in each round.
PATHS = {
    "train_ceiling_img_s": "ceiling (plain loop, batches in memory)",
    "train_pipeline_img_s": "our pipeline (train.py's path)",
    "train_pipeline_cached_img_s": "our pipeline, images cached decoded at a smaller size",
    "peer_img_s": "peer recipe (run_image_classification.py)",
}
# Per mode: the models and what differs from the full run. Quick keeps the code path and scales the images down
# together (crop 128 px from 288 px JPEGs, as 224 from 500), so that decoding and augmenting weigh against the model
# about as at full size.
QUICK = {
    "models": ["resnet18"],
    "image_size": 128,
    "source_image_size": 288,
    "num_classes": 20,
    "warmup_steps": 2,
    "steps": 10,
    "infer_runs": 30,
}
FULL = {"models": ["resnet18", "efficientnet_b3"], "source_image_size": 500, "num_classes": 102, "infer_runs": 50}
# Steady-state steps per model in the full run: EfficientNet-B3 takes ~20 s per step of 32 on 2 CPU cores.
FULL_STEPS = {"resnet18": 20, "efficientnet_b3": 6}
WARMUP_STEPS, WARMUP_STEPS_GPU = 3, 10
# A GPU step takes milliseconds: enough steps for a window of seconds and for the data path to reach steady state.
FULL_STEPS_GPU = 200
# The reference recipes of the README, timed end to end on 1,020 Flowers-sized training images (--recipes).
RECIPES = {
    "resnet18 linear probe, 20 epochs": "configs/resnet18.yaml",
    "efficientnet_b3 8 + 5 epochs": "configs/efficientnet_b3.yaml",
}


@dataclass
class BenchArguments:
    """What to measure, on which data and device. Unset fields take the ``--quick`` or full run's values."""

    quick: bool = field(
        default=False, metadata={"help": "ResNet18 on smaller images, fewer steps: < 5 min on 2 cores."}
    )
    models: list[str] | None = field(
        default=None, metadata={"help": "timm architectures (full run: resnet18 efficientnet_b3; quick: resnet18)."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Model input size (default: the model's own; quick: 128)."}
    )
    source_image_size: int | None = field(
        default=None, metadata={"help": "Shorter side of the synthetic JPEGs (full: 500 like Flowers-102; quick: 288)."}
    )
    num_classes: int | None = field(default=None, metadata={"help": "Synthetic classes (full: 102; quick: 20)."})
    images_per_class: int = field(
        default=10, metadata={"help": "Synthetic images per class; every split is used for training (102 x 10: 1,020)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Training batch size of every training path."})
    workers: int | None = field(
        default=None,
        metadata={"help": "DataLoader workers of our path (default: FlowersTrainingArguments', min(8, cores))."},
    )
    warmup_steps: int | None = field(
        default=None, metadata={"help": "Training steps run before timing starts (CPU: 3; GPU: 10; quick: 2)."}
    )
    steps: int | None = field(
        default=None,
        metadata={"help": "Timed training steps (full CPU: resnet18 20, efficientnet_b3 6; GPU: 200; quick: 10)."},
    )
    rounds: int = field(
        default=1, metadata={"help": "Repeat the training measurements, interleaved, and take the medians."}
    )
    infer_runs: int | None = field(default=None, metadata={"help": "Timed predictions (full: 50; quick: 30)."})
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu or cuda (default: cuda if any)."}
    )
    precision: str = field(default="fp32", metadata={"help": "fp32, bf16 or fp16 (CUDA only), for training."})
    channels_last: bool = field(default=False, metadata={"help": "Model (and ceiling batches) in channels_last."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model in every training path."})
    recipes: bool = field(
        default=False, metadata={"help": "Also time the two reference recipes with train.py (hours on a CPU)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where datasets caches the synthetic images."})
    json_only: bool = field(default=False, metadata={"help": "Print only the JSON (used for one model per process)."})

    def __post_init__(self) -> None:
        mode = QUICK if self.quick else FULL
        for key, value in mode.items():
            if getattr(self, key, None) is None:
                setattr(self, key, value)
        if self.warmup_steps is None:
            self.warmup_steps = WARMUP_STEPS_GPU if self.device == "cuda" else WARMUP_STEPS
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("cpu", "cuda") or (self.device == "cuda" and not torch.cuda.is_available()):
            raise ValueError(f"--device must be cpu or cuda (with a CUDA GPU present), got {self.device!r}")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("--precision fp16 needs --device cuda; use bf16 or fp32 on a CPU")
        if min(self.batch_size, self.warmup_steps, self.rounds, self.infer_runs, self.images_per_class - 2) < 1:
            raise ValueError(
                "--batch_size, --warmup_steps, --rounds and --infer_runs must be positive, "
                "--images_per_class at least 3"
            )

    def steps_for(self, model: str) -> int:
        """Timed steps for ``model``: ``--steps``, else the mode's default."""
        if self.steps is not None:
            return self.steps
        return FULL_STEPS_GPU if self.device == "cuda" else FULL_STEPS.get(model, 10)


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
    raw = load_flowers("synthetic", data_args)
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


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a time stamp covers it."""
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------------------
# Training: the ceiling, our path, the peer recipe


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

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step in (self.warmup_steps, state.max_steps):
            self.stamps[state.global_step] = stamp(self.device)


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


def autocast(args: BenchArguments):
    """The mixed-precision context the Trainer uses for ``--precision`` (none for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    return torch.autocast(args.device, dtype=dtype) if dtype else contextlib.nullcontext()


def measure_ours(
    args: BenchArguments,
    model: torch.nn.Module,
    data: datasets.DatasetDict,
    class_weights: torch.Tensor | None,
    training_args: FlowersTrainingArguments,
) -> tuple[float, float]:
    """Images/s and CPU ms per image of ``train.py``'s path: ``build_trainer`` on the splits with
    ``with_transforms`` attached."""
    trainer = build_trainer(training_args, model, data["train"], data["validation"], class_weights)
    return timed_train(trainer, args.warmup_steps)


def measure_peer(
    args: BenchArguments, model: torch.nn.Module, train: datasets.Dataset, steps: int, output_dir: str
) -> tuple[float, float]:
    """Images/s and CPU ms per image of the ``run_image_classification.py`` recipe on ``train`` (with
    ``PeerTransform`` attached): a plain ``Trainer`` with its default DataLoader settings."""
    training_args = TrainingArguments(
        output_dir=output_dir,
        max_steps=args.warmup_steps + steps,
        per_device_train_batch_size=args.batch_size,
        remove_unused_columns=False,  # as the example's README runs it: the transform reads the image column
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",
        use_cpu=args.device == "cpu",
        torch_compile=args.compile,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        seed=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train, data_collator=peer_collate)
    return timed_train(trainer, args.warmup_steps)


class PeerTransform:
    """The example's training transform: RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize with the image
    processor's size, mean and std (here from the same timm data config), applied to a batch of PIL images."""

    def __init__(self, prep: Preprocessing) -> None:
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(prep.input_size),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(prep.mean, prep.std),
            ]
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        batch["pixel_values"] = [self.transform(image.convert("RGB")) for image in batch["image"]]
        return batch


def peer_collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The example's ``collate_fn``: stacked pixel values, labels as a tensor."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    return {"pixel_values": pixel_values, "labels": torch.tensor([example["label"] for example in examples])}


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


# ---------------------------------------------------------------------------------------------------------------
# Inference and memory


def measure_infer(
    args: BenchArguments, model: torch.nn.Module, prep: Preprocessing, photo: bytes, folder: Path
) -> dict[str, float]:
    """Milliseconds of the demo's ``FlowerClassifier.predict`` on a JPEG path and of the bare forward on a ready
    tensor, timed alternately so that both see the same load; fp32, as the demo runs."""
    save_model(model, folder, prep)
    classifier = FlowerClassifier.from_pretrained(folder, device=args.device)
    path = folder / "photo.jpg"
    path.write_bytes(photo)
    tensor = classifier.preprocess(open_image(path))[None].to(args.device)

    @torch.inference_mode()
    def bare() -> None:
        classifier.model(tensor)
        synchronize(args.device)

    def predict() -> None:
        classifier.predict(path)  # ends on .cpu(): no synchronize needed

    demo, ceiling = [], []
    for run in tqdm(range(-5, args.infer_runs), desc="inference", leave=False):  # 5 untimed warm-up runs
        demo_ms, bare_ms = milliseconds(predict), milliseconds(bare)
        if run >= 0:
            demo.append(demo_ms)
            ceiling.append(bare_ms)
    return {
        "infer_ms_p50": percentile(demo, 50),
        "infer_ms_p95": percentile(demo, 95),
        "infer_ceiling_ms_p50": percentile(ceiling, 50),
        "infer_ceiling_ms_p95": percentile(ceiling, 95),
    }


def milliseconds(function: Callable[[], None]) -> float:
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
        "ours": with_transforms(data, prep, seed=0),
        "cached": with_transforms(cached, prep, seed=0),
        "peer": datasets.DatasetDict({"train": data["train"].with_transform(PeerTransform(prep))}),
    }
    costs = {path: round(data_cpu_ms(splits["train"], args.batch_size), 2) for path, splits in inputs.items()}
    logger.info("Data path CPU ms per image, one thread: %s", costs)
    with tempfile.TemporaryDirectory(prefix="flowers_bench_") as tmp:
        training_args = ours_arguments(args, steps, tmp)
        training = train_rounds(args, name, inputs, prep, training_args)
        model = fresh_model(args, name, data["train"].features["label"].names).cpu()
        infer = measure_infer(args, model, prep, first_photo(data["train"]), Path(tmp) / "model")
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
        "train_pipeline_img_s": lambda model: measure_ours(args, model, ours, weights, training_args),
        "train_pipeline_cached_img_s": lambda model: measure_ours(args, model, cached, weights, training_args),
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


def cpu_key(path: str) -> str:
    """The JSON key of a training path's CPU ms per image: ``train_pipeline_img_s`` -> ``train_pipeline_cpu_ms``."""
    return path.replace("_img_s", "_cpu_ms")


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


def cache_processes(data: datasets.DatasetDict) -> int | None:
    """Processes that build the resized copy: every core for large pools, else one (start-up costs more)."""
    return os.cpu_count() if len(data["train"]) >= 2000 and (os.cpu_count() or 1) > 1 else None


def first_photo(split: datasets.Dataset) -> bytes:
    """The encoded bytes of the split's first image, as they would lie in a file."""
    return split.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]


def bench_in_child(argv: list[str], name: str) -> dict[str, Any]:
    """``bench_model`` for one model in a fresh process, so that its memory peak and warm-up are its own."""
    overrides = ["--models", name, "--json_only", "--recipes", "false"]  # argparse: the last value of a flag wins
    command = [sys.executable, str(Path(__file__).resolve()), *argv, *overrides]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # logs and progress pass through
    return json.loads(done.stdout.strip().splitlines()[-1])["runs"][0]


# ---------------------------------------------------------------------------------------------------------------
# The reference recipes (--recipes)


def time_recipes(args: BenchArguments) -> dict[str, float]:
    """Wall seconds of each reference recipe, ``train.py`` end to end (every epoch: no early stopping; evaluation,
    test and reports included) on the synthetic photos at 500 px: 1,020 training images, from random init."""
    cache = [] if args.cache_dir is None else ["--cache_dir", args.cache_dir]
    load_flowers("synthetic", DataArguments(dataset="synthetic", synthetic_image_size=500, cache_dir=args.cache_dir))
    seconds = {}
    for name, preset in RECIPES.items():
        with tempfile.TemporaryDirectory(prefix="flowers_recipe_") as output_dir:
            command = [
                sys.executable, "train.py", "--config", preset, "--dataset", "synthetic", "--synthetic_image_size",
                "500", "--pretrained", "false", "--early_stopping_patience", "0", "--precision", args.precision,
                "--use_cpu", str(args.device == "cpu").lower(), "--torch_compile", str(args.compile).lower(),
                "--report_to", "none", "--output_dir", output_dir, *cache,
            ]  # fmt: skip
            logger.info("Recipe %s: %s", name, shlex.join(command))
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True)
            seconds[name] = round(time.perf_counter() - start, 1)
            logger.info("Recipe %s: %.0f s", name, seconds[name])
    return seconds


# ---------------------------------------------------------------------------------------------------------------
# Report


def target_checks(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each ratio of the issue with its target on this device, and whether (or by how much) it is missed. Training
    ratios also get ``cpu_time_ratio``, the same comparison made from CPU ms per image (see ``format_table``)."""
    checks = {}
    for name, numerator, denominator, op, cpu_target, gpu_target in TARGETS:
        target = gpu_target if run["device"] == "cuda" else cpu_target
        value = run[numerator] / run[denominator]
        checks[name] = {"value": round(value, 3), "target": f"{op} {target}", "result": verdict(value, op, target)}
        if numerator.endswith("_img_s"):
            checks[name]["cpu_time_ratio"] = round(run[cpu_key(denominator)] / run[cpu_key(numerator)], 3)
    return checks


def verdict(value: float, op: str, target: float) -> str:
    """``met``, or ``missed by`` the gap in the ratio and as a share of the target."""
    gap = target - value if op == ">=" else value - target
    if gap <= 0:
        return "met"
    return f"missed by {gap:.2f} ({gap / target:.0%})"


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


def format_table(summary: dict[str, Any]) -> str:
    """The figures per model, each ratio against its target, the CPU cost per image, the recipes' wall times."""
    info = summary["machine"]
    heading = (
        f"flowers_hf benchmark, {summary['date']}: {summary['device']} ({info['name']}, {info['cpu_count']} cores), "
        f"torch {info['torch']}; load average {summary['load_average'][0]:.1f} at the start, "
        f"{summary['load_average'][1]:.1f} at the end"
    )
    sections = [[heading], figures_table(summary["runs"]), targets_table(summary["runs"]), cpu_table(summary["runs"])]
    if summary.get("recipes"):
        sections.append(
            [f"{'recipe (train.py, 1,020 images at 500 px)':<46}wall s"]
            + [f"{name:<46}{seconds:.0f}" for name, seconds in summary["recipes"].items()]
        )
    return "\n\n".join("\n".join(lines) for lines in sections)


def figures_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'model':<16}{'px':>5}{'batch':>6}{'workers':>8}{'ceiling img/s':>15}{'ours img/s':>12}{'cached img/s':>14}"
        f"{'peer img/s':>12}{'demo ms p50/p95':>18}{'bare ms p50/p95':>18}{'RSS MB main/worker':>21}"
    ]
    for run in runs:
        lines.append(
            f"{run['model']:<16}{run['image_size']:>5}{run['batch_size']:>6}{run['workers']:>8}"
            f"{run['train_ceiling_img_s']:>15.2f}{run['train_pipeline_img_s']:>12.2f}"
            f"{run['train_pipeline_cached_img_s']:>14.2f}{run['peer_img_s']:>12.2f}"
            f"{run['infer_ms_p50']:>10.1f} / {run['infer_ms_p95']:<5.1f}"
            f"{run['infer_ceiling_ms_p50']:>10.1f} / {run['infer_ceiling_ms_p95']:<5.1f}"
            f"{run['peak_rss_mb']:>13.0f} / {run['peak_rss_worker_mb']:<5.0f}"
        )
    return lines


def targets_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'model':<16}{'ratio':<22}{'value':>7}  {'target':<9}{'result':<24}from CPU time"]
    for run in runs:
        for name, check in run["targets"].items():
            from_cpu = f"{check['cpu_time_ratio']:.2f}" if "cpu_time_ratio" in check else ""
            lines.append(
                f"{run['model']:<16}{name:<22}{check['value']:>7.2f}  {check['target']:<9}{check['result']:<24}"
                f"{from_cpu}"
            )
    return lines


def cpu_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "CPU ms per image (this process and its workers, every thread): a shared machine's load changes wall time",
        "more than CPU time; with every core busy, throughput ratios approach the inverse CPU-time ratios.",
        f"{'model':<16}{'ceiling':>9}{'ours':>9}{'cached':>9}{'peer':>9}   data alone, 1 thread: ours / cached / peer",
    ]
    for run in runs:
        costs = " / ".join(f"{ms:.2f}" for ms in run["data_cpu_ms_per_image"].values())
        lines.append(f"{run['model']:<16}" + "".join(f"{run[cpu_key(path)]:>9.1f}" for path in PATHS) + f"   {costs}")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    start, load_start = time.perf_counter(), os.getloadavg()[0]

    # Each model: in this process when it is the only one, else one fresh process per model.
    if len(args.models) == 1:
        runs = [bench_model(args, args.models[0])]
    else:
        runs = [bench_in_child(argv, name) for name in args.models]
    for run in runs:
        run["targets"] = target_checks(run)
    recipes = time_recipes(args) if args.recipes else None

    # The table, then the JSON on the last line: the first model's figures at the top level, every model's in runs.
    summary = {
        **runs[0],
        "runs": runs,
        "recipes": recipes,
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
