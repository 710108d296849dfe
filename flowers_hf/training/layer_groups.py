"""Which parameters train: timm's coarse parameter groups, frozen from the input end, BatchNorm statistics included."""

from __future__ import annotations

import logging
from itertools import chain

import torch
from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
from timm.models import group_parameters
from timm.utils import freeze, unfreeze
from torchvision.ops.misc import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

_BATCH_NORM = (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm, BatchNormAct2d)
_FROZEN_BATCH_NORM = (FrozenBatchNorm2d, FrozenBatchNormAct2d)


def parameter_groups(model: torch.nn.Module) -> list[list[str]]:
    """Parameter names by depth, from the stem to the classifier, as timm groups them for layer-wise schedules.

    ResNets give stem, layer1 … layer4, head; EfficientNets give stem, blocks.0 … blocks.6 (the last with
    conv_head), head; ViTs give the embeddings, one group per block, head. The last group always holds the
    classifier. Architectures without timm's ``group_matcher`` give two groups: backbone and classifier.

    Args:
        model: a timm model (``TimmWrapperForImageClassification.timm_model``).
    """
    classifier = {name for name, _ in _classifier_parameters(model)}
    if hasattr(model, "group_matcher"):
        groups = [list(names) for names in group_parameters(model, model.group_matcher(coarse=True)).values()]
    else:
        groups = [[name for name, _ in model.named_parameters()]]
    groups = [[name for name in group if name not in classifier] for group in groups]
    return [group for group in groups if group] + [sorted(classifier)]


def _classifier_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    head = model.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    return [(name, p) for name, p in model.named_parameters() if id(p) in head_ids]


def set_trainable(model: torch.nn.Module, groups: list[list[str]], last_n: int | None) -> None:
    """Train the last ``last_n`` groups (the classifier counts as one) and freeze the others.

    BatchNorm layers of frozen groups become ``FrozenBatchNorm2d``: their running statistics stay those of
    the pretrained model, and the frozen features are the same in training as at evaluation.

    Args:
        model: a timm model.
        groups: its ``parameter_groups``, computed once before any freezing.
        last_n: how many groups from the end train; ``None`` trains everything.
    """
    if last_n is None:
        unfreeze(model)
        return
    if not 1 <= last_n <= len(groups):
        raise ValueError(f"can train 1 to {len(groups)} parameter groups of this model, not {last_n}")
    trainable = set(chain.from_iterable(groups[len(groups) - last_n :]))
    for name, module in list(model.named_modules()):
        is_trainable = f"{name}.weight" in trainable
        if not is_trainable and isinstance(module, _BATCH_NORM):
            freeze(model, [name])
        elif is_trainable and isinstance(module, _FROZEN_BATCH_NORM):
            unfreeze(model, [name])
    for name, param in model.named_parameters():
        param.requires_grad = name in trainable


def describe_trainable(model: torch.nn.Module) -> str:
    """``"trainable 51,300 of 11,227,812 parameters (0.46%)"``."""
    total = sum(p.numel() for p in chain(model.parameters(), _frozen_affine(model)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)"


def _frozen_affine(model: torch.nn.Module) -> list[torch.Tensor]:
    # FrozenBatchNorm2d keeps weight and bias as buffers; count them so the total does not change with freezing.
    return [t for m in model.modules() if isinstance(m, _FROZEN_BATCH_NORM) for t in (m.weight, m.bias)]
