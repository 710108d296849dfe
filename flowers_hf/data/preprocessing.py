"""The model's input contract (size, crop, interpolation, mean, std): derived once from timm, reused everywhere."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import timm
import torch
from timm.data import resolve_data_config, resolve_model_data_config

from flowers_hf.data.arguments import TransformArguments

CROP_MODES = ("center", "squash")


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects as input; the eval transform reproduces timm's for these values."""

    input_size: tuple[int, int]  # (height, width)
    crop_pct: float
    crop_mode: str
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode {self.crop_mode!r} is not supported; use one of {CROP_MODES}")
        if self.crop_mode == "center" and self.input_size[0] != self.input_size[1]:
            raise ValueError(f"crop_mode 'center' needs a square input size, got {self.input_size}")

    @property
    def scale_size(self) -> tuple[int, int]:
        """Size before the centre crop, as timm computes it: floor(input size / crop_pct)."""
        return (math.floor(self.input_size[0] / self.crop_pct), math.floor(self.input_size[1] / self.crop_pct))

    def to_timm_data_config(self) -> dict[str, Any]:
        """The same values in timm's ``data_config`` form (for ``timm.data.create_transform``)."""
        config = asdict(self)
        config["input_size"] = (3, *self.input_size)
        return config


def resolve_preprocessing(
    model: str | torch.nn.Module | dict[str, Any], overrides: TransformArguments | None = None
) -> Preprocessing:
    """Take input size, crop, interpolation, mean and std from a timm model's data config.

    Args:
        model: a timm architecture name (``resnet18``, ``efficientnet_b3.ra2_in1k``), a model instance,
            or a ``pretrained_cfg`` dict (as stored in a TimmWrapper ``config.json``).
        overrides: command-line overrides; ``None`` fields keep the model's values.
    """
    if isinstance(model, torch.nn.Module):
        config = resolve_model_data_config(model)
    else:
        pretrained_cfg = model if isinstance(model, dict) else _pretrained_cfg(model)
        config = resolve_data_config(pretrained_cfg=pretrained_cfg)
    overrides = overrides or TransformArguments()
    size = overrides.image_size
    return Preprocessing(
        input_size=(size, size) if size else tuple(config["input_size"][1:]),
        crop_pct=overrides.crop_pct or config["crop_pct"],
        crop_mode=config.get("crop_mode", "center"),
        interpolation=overrides.interpolation or config["interpolation"],
        mean=tuple(overrides.mean or config["mean"]),
        std=tuple(overrides.std or config["std"]),
    )


def _pretrained_cfg(name: str) -> dict[str, Any]:
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        if not timm.is_model(name):
            raise ValueError(f"'{name}' is not a timm architecture (see timm.list_models())")
        return {}  # an architecture without registered weights: timm's defaults apply
    return cfg.to_dict()
