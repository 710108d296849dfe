"""The loss: cross-entropy weighted per class by the training split's label counts, hard or soft targets, correct
under gradient accumulation and DDP (``ClassWeightedTrainer`` supplies the step's total weight); with a teacher,
knowledge distillation on top of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TeacherTargets:
    """A training batch's targets under distillation: its labels (hard or soft) and the teacher's logits for the same
    input, uncalibrated (``flowers_hf.training.distill.Teacher``)."""

    labels: torch.Tensor
    teacher_logits: torch.Tensor


class DistillationLoss:
    """Knowledge distillation (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network") as a Trainer
    ``compute_loss_func``: ``α · CE + (1 − α) · T² · KL(softmax(t / T) ‖ softmax(s / T))``.

    CE is ``cross_entropy`` (class weights, label smoothing, soft targets). The KL term is averaged with the same
    weights as CE: each image counts by its class weight in both terms, so both share the step's total weight
    (``num_items_in_batch``) and stay exact under gradient accumulation and DDP; unweighted, it is the plain batch mean.
    ``T²`` keeps the soft targets' gradients on the scale of the hard ones' as ``T`` grows. Targets that are a plain
    label tensor (evaluation) get CE alone.

    Args:
        cross_entropy: the hard-label loss.
        alpha: the weight of CE; 1 is plain training.
        temperature: the softening temperature ``T`` of both distributions.
    """

    def __init__(self, cross_entropy: WeightedCrossEntropy, alpha: float, temperature: float) -> None:
        self.cross_entropy = cross_entropy
        self.alpha = alpha
        self.temperature = temperature

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: torch.Tensor | None = None):
        if not isinstance(labels, TeacherTargets):
            return self.cross_entropy(outputs, labels, num_items_in_batch)
        hard = self.cross_entropy(outputs, labels.labels, num_items_in_batch)
        soft = self.kl_divergence(outputs["logits"], labels.teacher_logits, labels.labels, num_items_in_batch)
        return self.alpha * hard + (1.0 - self.alpha) * self.temperature**2 * soft

    def kl_divergence(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted mean over the batch of KL(teacher ‖ student) at temperature ``T``.

        Args:
            student_logits: the student's logits, shape (n, classes).
            teacher_logits: the teacher's, same shape.
            labels: the batch's labels, which give each image its weight.
            num_items_in_batch: the step's total weight (training); ``None``: this batch's.
        """
        student = (student_logits.float() / self.temperature).log_softmax(-1)
        teacher = (teacher_logits.float() / self.temperature).log_softmax(-1)
        per_image = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
        weights = self.cross_entropy.sample_weights(labels)
        return (weights * per_image).sum() / (weights.sum() if num_items_in_batch is None else num_items_in_batch)
