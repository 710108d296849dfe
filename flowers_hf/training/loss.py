"""The loss: cross-entropy weighted per class by the training split's label counts, hard or soft targets, correct
under gradient accumulation and DDP (``ClassWeightedTrainer`` supplies the step's total weight)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


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

    Soft targets (N, C) (mixup, CutMix: see ``flowers_hf.data.mixup``) give each image the weight s = Σ_c t_c·w_c and
    the loss Σ_i s_i·CE(t_i, p_i) / Σ_i s_i. The class weights thus decide how much an image counts, never what it
    should predict (CE(t, p) is still smallest at p = t), and a one-hot target gives the hard-label loss. The
    targets bring their own label smoothing; ``label_smoothing`` applies to hard labels only.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        self.weight = weight
        self.label_smoothing = label_smoothing

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor | None = None):
        logits = outputs["logits"].float()
        if labels.dim() == 2:
            nll = -(labels.float() * logits.log_softmax(-1)).sum(-1)
            weights = self.sample_weights(labels)
            return (weights * nll).sum() / (weights.sum() if num_items_in_batch is None else num_items_in_batch)
        weight = None if self.weight is None else self.weight.to(logits.device)
        if num_items_in_batch is None:
            return F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)
        loss = F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing, reduction="sum")
        return loss / num_items_in_batch

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor:
        """The weight of each image: its class weight (hard labels) or Σ_c t_c·w_c (soft targets); 1 unweighted."""
        if self.weight is None:
            return torch.ones(labels.shape[0], device=labels.device)
        weight = self.weight.to(labels.device)
        return labels.float() @ weight if labels.dim() == 2 else weight[labels].float()

    def total_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """The denominator of the weighted mean over ``labels``: the sum of their weights (or their count)."""
        return self.sample_weights(labels).sum()
