"""The Trainer: class-weighted cross-entropy, correct under gradient accumulation and DDP; training accuracy."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from .metrics import build_compute_metrics
from .transforms import collate_fn

logger = logging.getLogger(__name__)


def class_weights_from_counts(counts: Sequence[int], strategy: str) -> torch.Tensor | None:
    """Per-class loss weights from training label counts.

    Args:
        counts: images per class id in the training split.
        strategy: ``balanced`` gives n_samples / (n_classes × count_c) (scikit-learn's "balanced"; a class with
            no training image gets 1); ``none`` gives ``None`` (plain cross-entropy).
    """
    if strategy == "none":
        return None
    if strategy != "balanced":
        raise ValueError(f"unknown class weight strategy {strategy!r}; use 'balanced' or 'none'")
    counts_t = torch.as_tensor(counts, dtype=torch.float64)
    weights = counts_t.sum() / (len(counts_t) * counts_t.clamp(min=1))
    return torch.where(counts_t > 0, weights, torch.ones_like(weights)).float()


class WeightedCrossEntropy:
    """Cross-entropy with optional class weights and label smoothing, as a Trainer ``compute_loss_func``.

    Without ``num_items_in_batch`` it is ``F.cross_entropy(logits, labels, weight=…)``: the weighted mean over the
    batch. With it (training), the sum over this micro-batch divided by ``num_items_in_batch``, which
    ``ClassWeightedTrainer`` sets to the total weight of every micro-batch of the optimizer step on every
    process: gradient accumulation and DDP then give the same loss as one big batch.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        self.weight = weight
        self.label_smoothing = label_smoothing

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor | None = None):
        logits = outputs["logits"].float()
        weight = None if self.weight is None else self.weight.to(logits.device)
        if num_items_in_batch is None:
            return F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)
        loss = F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing, reduction="sum")
        return loss / num_items_in_batch

    def total_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """The denominator of the weighted mean over ``labels``: the sum of their class weights (or their count)."""
        if self.weight is None:
            return torch.tensor(float(labels.numel()))
        return self.weight.to(labels.device)[labels].sum().float()


class ClassWeightedTrainer(Trainer):
    """``Trainer`` whose loss is ``WeightedCrossEntropy`` and whose training logs include ``train_accuracy``.

    ``train_accuracy`` is measured on the augmented training batches since the previous log.
    """

    def __init__(self, *args: Any, loss: WeightedCrossEntropy, backbone_learning_rate_scale: float = 1.0, **kwargs):
        super().__init__(*args, compute_loss_func=loss, **kwargs)
        self.loss = loss
        self.backbone_learning_rate_scale = backbone_learning_rate_scale
        self._train_counts: torch.Tensor | None = None  # [correct, seen] since the last log

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if num_items is None or not batches:
            return batches, num_items
        # The Trainer counts labels; a weighted mean divides by their total weight instead.
        total = sum(self.loss.total_weight(batch["labels"]) for batch in batches).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        return batches, total

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ):
        labels = inputs.get("labels")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and labels is not None:
            correct = (outputs["logits"].argmax(-1) == labels).sum()
            counts = torch.stack([correct, torch.tensor(labels.numel(), device=labels.device)])
            self._train_counts = counts if self._train_counts is None else self._train_counts + counts
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._train_counts is not None:
            # Every process logs the training loss together, so the counts can be summed across them here.
            correct, seen = self.accelerator.reduce(self._train_counts, reduction="sum").tolist()
            logs["train_accuracy"] = round(correct / max(seen, 1), 4)
            self._train_counts = None
        super().log(logs, start_time)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if self.backbone_learning_rate_scale == 1.0:
            return optimizer
        # Split the Trainer's (decay, no decay) groups into head and backbone, the backbone at a lower rate.
        timm_model = (model or self.model).timm_model
        head = {id(p) for p in timm_model.get_classifier().parameters()}
        groups = []
        for group in optimizer.param_groups:
            for is_head in (True, False):
                params = [p for p in group["params"] if (id(p) in head) == is_head]
                scale = 1.0 if is_head else self.backbone_learning_rate_scale
                if params:
                    groups.append({**group, "params": params, "lr": group["lr"] * scale})
        optimizer.param_groups.clear()  # the optimizer has no state yet: regrouping is safe
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer


def build_trainer(
    args: TrainingArguments,
    model: torch.nn.Module,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    class_weights: torch.Tensor | None,
) -> ClassWeightedTrainer:
    """The Trainer of one stage: weighted loss, offline metrics, early stopping on the validation metric.

    Args:
        args: the stage's training arguments (``FlowersTrainingArguments``).
        model: the classifier.
        train_dataset: the training split with the training transform attached.
        eval_dataset: the validation split with the eval transform attached.
        class_weights: per-class loss weights, or ``None``.
    """
    callbacks = []
    if getattr(args, "early_stopping_patience", 0) > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    return ClassWeightedTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_fn,
        compute_metrics=build_compute_metrics(),
        callbacks=callbacks,
        loss=WeightedCrossEntropy(class_weights, label_smoothing=args.label_smoothing_factor),
        backbone_learning_rate_scale=getattr(args, "backbone_learning_rate_scale", 1.0),
    )
