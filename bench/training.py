"""The training paths of ``bench/run.py`` for one model: the model-only ceiling (a plain loop over batches in
memory) and our path (``train.py``'s ``build_trainer``), each round every path in turn on a fresh model (the peer
recipe is in ``bench/peer.py``)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments, set_seed

from bench.arguments import BenchArguments
from bench.peer import measure_peer
from bench.tables import PATHS, cpu_key
from bench.timing import rates, stamp, timed_train
from flowers_hf.data import label_counts
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.loss import class_weights_from_counts
from flowers_hf.training.trainer import build_trainer

logger = logging.getLogger("bench")


def fresh_model(args: BenchArguments, name: str, class_names: list[str]) -> torch.nn.Module:
    """The same randomly initialised classifier for every path (throughput does not depend on the weights)."""
    set_seed(0)
    model = build_model(ModelArguments(model=name, pretrained=False), class_names)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


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
        torch_compile_backend=args.compile_backend if args.compile else None,
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
