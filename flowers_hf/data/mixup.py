"""Mixup and CutMix of training batches: timm's ``Mixup`` on the device, giving soft targets.

``ClassWeightedTrainer`` mixes each training batch once it is the model's float input (``ModelInput``), before the
step's total weight is counted; validation and test batches stay plain images with hard labels.
"""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target


class BatchMixer:
    """Mix a batch with timm's ``Mixup``: ``labels`` become soft targets of shape (N, C).

    The targets carry the label smoothing too (timm's ``Mixup`` applies it), also on batches that ``prob`` leaves
    unmixed. timm pairs image i with image N-1-i and needs an even batch: an odd batch (with an even
    ``--per_device_train_batch_size`` only an epoch's last can be) mixes its first N-1 images, and the last one
    keeps its own image with its smoothed one-hot target.
    """

    def __init__(self, mixup: Mixup) -> None:
        self.mixup = mixup

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not pixels.is_floating_point():
            raise TypeError(f"mixing needs the model's float input, got {pixels.dtype} pixels")
        even = len(labels) - len(labels) % 2
        mixed, targets = self.mixup(pixels[:even].clone(), labels[:even])
        rest = mixup_target(labels[even:], self.mixup.num_classes, smoothing=self.mixup.label_smoothing)
        return torch.cat([mixed, pixels[even:]]), torch.cat([targets, rest])


def build_mixer(
    num_classes: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
) -> BatchMixer:
    """Mixup and/or CutMix (at least one alpha above 0), timm's batch mode.

    Args:
        num_classes: the number of classes (the width of the soft targets).
        mixup_alpha: mixup's Beta(α, α) for the mixing weight (0: no mixup).
        cutmix_alpha: CutMix's Beta(α, α) for the pasted area (0: no CutMix).
        prob: the probability that a batch is mixed at all.
        switch_prob: with both on, the probability that a batch gets CutMix rather than mixup.
        label_smoothing: label smoothing of the targets.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("mixup or CutMix needs mixup_alpha or cutmix_alpha above 0")
    mixup = Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=prob,
        switch_prob=switch_prob,
        mode="batch",
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
    return BatchMixer(mixup)
