"""Colour jitter as batch operations on uint8 image tensors, on their device (``--color_jitter_on_device``).

It is Albumentations' ``ColorJitter`` (2.0.8) as the training transform applies it to uint8 images, one image of
the batch at a time: with probability ``p``, brightness, contrast, saturation and hue in a random order, each
factor drawn uniformly from its range, the image brought back to 8 bits after each step as Albumentations' lookup
tables and OpenCV's 8-bit conversions do it (brightness and contrast truncate, saturation rounds; the hue moves in
OpenCV's 180 steps by a truncated whole number of them, and comes back to RGB truncated). The parameters (9 numbers
an image) are drawn on the CPU with torch's generator, so the device never waits; the pixels never leave it. The
tests check each step against Albumentations' own and the distribution of the changes over many draws against the
workers' jitter.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import torch

from flowers_hf.data.arguments import TransformArguments

# The factor at which Albumentations returns the image unchanged, per step (no 8-bit round trip either).
_IDENTITY = (1.0, 1.0, 1.0, 0.0)
# OpenCV's RGB2GRAY on 8 bits: fixed-point weights of 0.299, 0.587, 0.114 in 14 bits, rounded.
_GRAY_WEIGHTS = (4899, 9617, 1868)
_GRAY_SHIFT = 14


class BatchColorJitter:
    """Albumentations' ``ColorJitter`` for every image of a uint8 (N, 3, H, W) batch, with its own draws.

    Args:
        brightness: range of the brightness factor (1: unchanged).
        contrast: range of the contrast factor.
        saturation: range of the saturation factor.
        hue: range of the hue shift, as a fraction of the colour wheel.
        p: probability that an image is jittered at all.
    """

    def __init__(
        self,
        brightness: tuple[float, float],
        contrast: tuple[float, float],
        saturation: tuple[float, float],
        hue: tuple[float, float],
        p: float,
    ) -> None:
        self.ranges = torch.tensor([brightness, contrast, saturation, hue], dtype=torch.float64)
        self.p = p

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The jittered batch, uint8, on ``pixels``' device.

        Args:
            pixels: uint8 RGB images, (N, 3, H, W).
            generator: a CPU generator for the draws (default: torch's global one, which the Trainer seeds and
                checkpoints).
        """
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] != 3:
            raise TypeError(f"BatchColorJitter takes uint8 (N, 3, H, W) batches, got {pixels.dtype} {pixels.shape}")
        factors, order, applied = self.draw(len(pixels), generator)
        return jitter(pixels, factors, order, applied)

    def draw(self, images: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Each image's four factors (brightness, contrast, saturation, hue), its order of the four steps and
        whether it is jittered, drawn as Albumentations draws them: uniform factors, a uniform permutation."""
        low, high = self.ranges[:, 0], self.ranges[:, 1]
        factors = low + (high - low) * torch.rand(images, 4, generator=generator, dtype=torch.float64)
        order = torch.rand(images, 4, generator=generator).argsort(dim=1)
        applied = torch.rand(images, generator=generator) < self.p
        return factors, order, applied


class WithBatchJitter:
    """``transform`` of one image, then ``jitter`` of it as a batch of one: the whole training augmentation with
    ``--color_jitter_on_device``, for showing it (the augmentation samples plot).

    Args:
        transform: the workers' part, ``image -> uint8 CHW tensor``.
        jitter: the device's part.
    """

    def __init__(self, transform: Callable[[Any], torch.Tensor], jitter: BatchColorJitter) -> None:
        self.transform = transform
        self.jitter = jitter

    def __call__(self, image: Any) -> torch.Tensor:
        return self.jitter(self.transform(image).unsqueeze(0))[0]


def build_batch_color_jitter(aug: TransformArguments) -> BatchColorJitter | None:
    """The device-side jitter ``--color_jitter_on_device`` asks for, with the strengths the training transform's
    ``ColorJitter`` would have had; ``None`` when the flag is off or there is no jitter.

    Args:
        aug: the augmentation arguments.
    """
    if not aug.color_jitter_on_device or (aug.color_jitter <= 0 and aug.hue_jitter <= 0):
        return None
    strength = (max(0.0, 1 - aug.color_jitter), 1 + aug.color_jitter)
    return BatchColorJitter(strength, strength, strength, (-aug.hue_jitter, aug.hue_jitter), aug.color_jitter_prob)


def jitter(pixels: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
    """``pixels`` with each applied image's four steps in its order (``BatchColorJitter.draw``'s parameters, on the
    CPU). Each step runs once per position over the images that take it there: four steps' work per batch. Which
    images those are is worked out on the CPU and sent in one copy, so the device is never waited for.

    Args:
        pixels: uint8 RGB images, (N, 3, H, W), on any device.
        factors: (N, 4) brightness, contrast, saturation and hue factors.
        order: (N, 4) each image's permutation of the four steps (indices into brightness, contrast, ...).
        applied: (N,) whether each image is jittered.
    """
    groups, bounds = [], [0]
    for position in range(4):
        for step in range(4):
            takes = applied & (order[:, position] == step) & (factors[:, step] != _IDENTITY[step])
            groups.append(torch.nonzero(takes).flatten())
            bounds.append(bounds[-1] + len(groups[-1]))
    rows, factors = _to_device(torch.cat(groups), pixels.device), _to_device(factors, pixels.device)
    values = pixels.to(torch.float32)
    for group, (start, end) in enumerate(itertools.pairwise(bounds)):
        if end > start:
            step, taken = group % 4, rows[start:end]
            values[taken] = _STEPS[step](values[taken], factors[taken, step])
    return values.to(torch.uint8)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        tensor = tensor.pin_memory()  # a pinned copy does not wait for the device's queued work
    return tensor.to(device, non_blocking=True)


def adjust_brightness(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Albumentations' ``adjust_brightness_torchvision`` on 8-bit values (N, 3, H, W): scaled by ``factor`` (N,),
    clipped, truncated (its lookup table, in float32)."""
    return values.mul(_per_image(factor).float()).clamp_(0, 255).floor_()


def adjust_contrast(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Albumentations' ``adjust_contrast_torchvision``: blended with the mean of the image's 8-bit grey, clipped,
    truncated."""
    mean = gray(values).sum(dim=(1, 2, 3), dtype=torch.float64) / values[0, 0].numel()
    offset = _per_image(mean * (1 - factor)).float()
    return values.mul(_per_image(factor).float()).add_(offset).clamp_(0, 255).floor_()


def adjust_saturation(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Albumentations' ``adjust_saturation_torchvision``: blended with the image's 8-bit grey (OpenCV's
    ``addWeighted``), rounded and saturated."""
    blend = values.mul(_per_image(factor).float()).add_(gray(values).mul_(_per_image(1 - factor).float()))
    return blend.round_().clamp_(0, 255)


def adjust_hue(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Albumentations' ``adjust_hue_torchvision`` on uint8 images: OpenCV's 8-bit HSV (hue in 180 steps), the hue
    moved by ``floor(180 * factor)`` steps (its lookup table truncates), back to 8-bit RGB."""
    hue, saturation, value = _rgb_to_hsv8(values.to(torch.int32))
    hue = torch.remainder(hue + torch.floor(180 * factor).int().view(-1, 1, 1), 180)
    return _hsv8_to_rgb(hue, saturation, value)


def gray(values: torch.Tensor) -> torch.Tensor:
    """OpenCV's 8-bit ``RGB2GRAY`` of 8-bit values (N, 3, H, W): (N, 1, H, W), as floats."""
    weighted = sum(values[:, [channel]] * weight for channel, weight in enumerate(_GRAY_WEIGHTS))
    return torch.floor((weighted + 2 ** (_GRAY_SHIFT - 1)) / 2**_GRAY_SHIFT)


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _rgb_to_hsv8(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # OpenCV's RGB2HSV on 8 bits (hue range 180), in its fixed point: equal for all 2^24 colours (tested).
    red, green, blue = rgb.unbind(dim=1)
    value = torch.maximum(torch.maximum(red, green), blue)
    spread = value - torch.minimum(torch.minimum(red, green), blue)
    hue = torch.where(
        value == red, green - blue, torch.where(value == green, blue - red + 2 * spread, red - green + 4 * spread)
    )
    hue_scale, saturation_scale = _hsv_tables(rgb.device)
    hue = (hue * torch.take(hue_scale, spread.long()) + _HALF) >> _HSV_SHIFT
    hue = torch.where(hue < 0, hue + 180, hue)
    saturation = (spread * torch.take(saturation_scale, value.long()) + _HALF) >> _HSV_SHIFT
    return hue, saturation, value


def _hsv8_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # OpenCV's HSV2RGB on 8 bits: float32 sectors of the hexcone, then truncated as its vectorised loop does (4.14:
    # every pixel of a 224-px row with AVX2; only a row's last few, its scalar tail, are rounded). Within one level
    # of OpenCV's on 0.015 % of all (h, s, v) (tested).
    sixths = hue.float() * (6 / 180)
    sector = torch.floor(sixths)
    fraction = sixths - sector
    s, v = saturation.float() * (1 / 255), value.float() * (1 / 255)
    p, q, t = v * (1 - s), v * (1 - s * fraction), v * (1 - s * (1 - fraction))
    red = torch.where(sector == 1, q, torch.where(sector == 4, t, torch.where((sector == 2) | (sector == 3), p, v)))
    green = torch.where(sector == 0, t, torch.where(sector == 3, q, torch.where(sector >= 4, p, v)))
    blue = torch.where(sector == 2, t, torch.where(sector == 5, q, torch.where(sector <= 1, p, v)))
    return torch.stack([red, green, blue], dim=1).mul_(255).floor_()


@functools.cache
def _hsv_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # OpenCV's division tables: round((180 << shift) / (6 i)) for the hue, round((255 << shift) / i) for the
    # saturation; 0 at 0.
    steps = torch.arange(256, dtype=torch.float64)
    hue = torch.where(steps > 0, torch.round((180 << _HSV_SHIFT) / (6 * steps)), 0)
    saturation = torch.where(steps > 0, torch.round((255 << _HSV_SHIFT) / steps), 0)
    return hue.int().to(device), saturation.int().to(device)


_HSV_SHIFT = 12
_HALF = 1 << (_HSV_SHIFT - 1)

# In Albumentations' order: its "order" draws index this list.
_STEPS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_hue,
)
