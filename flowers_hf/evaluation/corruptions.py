"""A suite of distribution shifts built from Albumentations, each at five severities, in the spirit of ImageNet-C
(Hendrycks & Dietterich, 2019): lighting, colour cast, blur, noise, compression, geometry, framing and clutter.

An image is first resized as the eval transform resizes it (timm's resize for the model's data config), then
corrupted, then centre-cropped and normalised by the eval transform as usual. Corrupting at the resolution the
model sees makes a severity mean the same for 64-pixel drawings and 500-pixel photos. Pixel magnitudes (blur
sizes, stroke widths) are given for ImageNet-C's 224-pixel images and scaled to the model's input size.

Each image gets its own random draws (brightening or darkening, motion direction, noise, corner, background),
seeded by the suite's seed and the image's index: the same at every severity, so severities differ in magnitude
only, and the same in every run whatever the batching or the number of DataLoader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
from PIL import Image

from flowers_hf.data.pixels import ImageInput, to_pil
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import eval_steps

logger = logging.getLogger(__name__)

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 224  # ImageNet-C's image size: pixel magnitudes below are given at this size
_REFLECT = cv2.BORDER_REFLECT_101
MOTION_BLUR_LENGTHS = (7, 13, 19, 27, 37)


@dataclass(frozen=True)
class Corruption:
    """One kind of shift: a magnitude per severity and how to build the Albumentations transform for one.

    Args:
        name: the key in ``robustness.json``.
        description: what it does and what the magnitude means.
        levels: the magnitude at severities 1 to 5.
        build: ``(magnitude, pixel scale) -> transform``; the pixel scale is the input size over 224.
    """

    name: str
    description: str
    levels: tuple[float, ...]
    build: Callable[[float, float], A.BasicTransform]


def _either_way(make: Callable[[float], A.BasicTransform], magnitude: float) -> A.BasicTransform:
    """``make(magnitude)`` or ``make(-magnitude)``, drawn per image."""
    return A.OneOf([make(magnitude), make(-magnitude)], p=1.0)


def _exposure(stops: float, scale: float) -> A.BasicTransform:
    def make(s: float) -> A.BasicTransform:
        factor = 2.0**s
        return A.ColorJitter(brightness=(factor, factor), contrast=(1, 1), saturation=(1, 1), hue=(0, 0), p=1.0)

    return _either_way(make, stops)


def _contrast(factor: float, scale: float) -> A.BasicTransform:
    return A.ColorJitter(brightness=(1, 1), contrast=(factor, factor), saturation=(1, 1), hue=(0, 0), p=1.0)


def _channel_gains(image: np.ndarray, gains: tuple[float, float, float], **params: Any) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def _color_temperature(gain: float, scale: float) -> A.BasicTransform:
    # A white-balance error: warm (red up, blue down) or cool (the reverse), green as the reference channel.
    def make(g: float) -> A.BasicTransform:
        return A.Lambda(image=partial(_channel_gains, gains=(1 + g, 1.0, 1 - g)), p=1.0)

    return _either_way(make, gain)


def _gaussian_blur(sigma: float, scale: float) -> A.BasicTransform:
    s = sigma * scale
    return A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1.0)


def _motion_blur(length: float, scale: float) -> A.BasicTransform:
    # Odd kernels; below 96-px inputs the scaled kernels would round to the same 3 px at several severities, so
    # they stay at their 96-px size (3 px at severity 1).
    scaled = length * max(scale, 3 / MOTION_BLUR_LENGTHS[0])
    kernel = 2 * round((scaled - 1) / 2) + 1
    return A.MotionBlur(blur_limit=(kernel, kernel), allow_shifted=False, p=1.0)


def _gaussian_noise(std: float, scale: float) -> A.BasicTransform:
    return A.GaussNoise(std_range=(std, std), mean_range=(0, 0), per_channel=True, p=1.0)


def _jpeg(quality: float, scale: float) -> A.BasicTransform:
    return A.ImageCompression(compression_type="jpeg", quality_range=(int(quality), int(quality)), p=1.0)


def _rotation(degrees: float, scale: float) -> A.BasicTransform:
    def make(d: float) -> A.BasicTransform:
        return A.Rotate(limit=(d, d), border_mode=_REFLECT, p=1.0)

    return _either_way(make, degrees)


def _perspective(jitter: float, scale: float) -> A.BasicTransform:
    return A.Perspective(scale=(jitter, jitter), keep_size=True, border_mode=_REFLECT, p=1.0)


def _zoom(side: float, scale: float) -> A.BasicTransform:
    margin = (1.0 - side) / 2
    return A.CropAndPad(percent=(-margin, -margin, -margin, -margin), keep_size=True, p=1.0)


def _off_centre_crop(side: float, scale: float) -> A.BasicTransform:
    # A window of the zoom's size in one of the four corners: the same magnification, off centre.
    cut = -(1.0 - side)
    corners = [(0, cut, cut, 0), (0, 0, cut, cut), (cut, cut, 0, 0), (cut, 0, 0, cut)]  # top, right, bottom, left
    return A.OneOf([A.CropAndPad(percent=c, keep_size=True, p=1.0) for c in corners], p=1.0)


class ClutteredBackground(A.ImageOnlyTransform):
    """Shrink the image around its centre and paste it onto a busy random background (coloured multi-scale noise
    crossed by strokes, like foliage, branches and fences).

    Args:
        subject: side of the pasted image as a share of the original.
        stroke_scale: stroke width multiplier (pixel scale of the image against 224 px).
    """

    def __init__(self, subject: float, stroke_scale: float = 1.0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.subject = subject
        self.stroke_scale = stroke_scale

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("subject", "stroke_scale")

    def get_params(self) -> dict[str, Any]:
        return {"background_seed": int(self.random_generator.integers(2**31))}

    def apply(self, img: np.ndarray, background_seed: int = 0, **params: Any) -> np.ndarray:
        height, width = img.shape[:2]
        canvas = busy_background(height, width, np.random.default_rng(background_seed), self.stroke_scale)
        small_h, small_w = max(1, round(height * self.subject)), max(1, round(width * self.subject))
        small = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA)
        top, left = (height - small_h) // 2, (width - small_w) // 2
        canvas[top : top + small_h, left : left + small_w] = small
        return canvas


def busy_background(height: int, width: int, rng: np.random.Generator, stroke_scale: float = 1.0) -> np.ndarray:
    """A cluttered ``(height, width, 3)`` uint8 texture: colour noise at four scales plus random strokes."""
    canvas = np.zeros((height, width, 3), np.float32)
    for cells in (2, 4, 8, 16):
        noise = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        canvas += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) / 4
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    for _ in range(24):
        start = (int(rng.integers(width)), int(rng.integers(height)))
        end = (int(rng.integers(width)), int(rng.integers(height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(canvas, start, end, colour, thickness=max(1, round(rng.uniform(2, 8) * stroke_scale)))
    return canvas


def _clutter(subject: float, scale: float) -> A.BasicTransform:
    return ClutteredBackground(subject, stroke_scale=scale)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("brightness", "exposure error, brighter or darker: stops (×2^±s)", (1 / 3, 2 / 3, 1, 1.5, 2),
                   _exposure),
        Corruption("contrast", "contrast towards the mean grey: factor", (0.7, 0.5, 0.35, 0.25, 0.15), _contrast),
        Corruption("color_temperature", "warm or cool cast: red and blue gains 1±g and 1∓g", (0.1, 0.2, 0.3, 0.4, 0.5),
                   _color_temperature),
        Corruption("gaussian_blur", "defocus: sigma in pixels at 224 px", (1, 2, 3, 4, 6), _gaussian_blur),
        Corruption("motion_blur", "camera shake: kernel length in pixels at 224 px", MOTION_BLUR_LENGTHS, _motion_blur),
        Corruption("gaussian_noise", "sensor noise: std as a share of 255", (0.08, 0.12, 0.18, 0.26, 0.38),
                   _gaussian_noise),
        Corruption("jpeg_compression", "JPEG quality", (25, 18, 15, 10, 7), _jpeg),
        Corruption("rotation", "tilted camera: degrees either way, reflected border", (10, 20, 30, 45, 60), _rotation),
        Corruption("perspective", "oblique view: corner jitter as a share of the side", (0.03, 0.06, 0.09, 0.12, 0.15),
                   _perspective),
        Corruption("zoom", "closer framing: centre window side, resized back", (0.9, 0.8, 0.7, 0.6, 0.5), _zoom),
        Corruption("off_centre_crop", "off-centre framing: corner window side, resized back",
                   (0.9, 0.8, 0.7, 0.6, 0.5), _off_centre_crop),
        Corruption("cluttered_background", "smaller subject on a busy background: its side as a share",
                   (0.85, 0.7, 0.55, 0.45, 0.35), _clutter),
    )
}  # fmt: skip


def build_corruption(name: str, severity: int, scale: float = 1.0) -> A.Compose:
    """The Albumentations pipeline for one corruption at one severity (uint8 HWC RGB in, same shape out).

    Args:
        name: a key of ``CORRUPTIONS``.
        severity: 1 (mild) to 5 (severe).
        scale: the image's pixel scale against 224 px (the model's input size / 224).
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; use one of {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    corruption = CORRUPTIONS[name]
    return A.Compose([corruption.build(corruption.levels[severity - 1], scale)])


def image_seed(seed: int, index: int) -> int:
    """The random seed of image ``index`` in a suite seeded with ``seed`` (stable across runs and processes)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Apply one corruption to a uint8 HWC RGB image (a convenience over :func:`build_corruption`)."""
    pipeline = build_corruption(name, severity, scale)
    pipeline.set_random_seed(seed)
    return pipeline(image=image)["image"]


class CorruptionTransform:
    """``(image, index) -> corrupted image`` at the model's resolution, before the eval transform's crop.

    Args:
        prep: the model's input contract: the resize and the pixel scale come from it.
        name: a key of ``CORRUPTIONS``.
        severity: 1 to 5.
        seed: the suite's seed; image ``index`` is corrupted with ``image_seed(seed, index)``.
    """

    def __init__(self, prep: Preprocessing, name: str, severity: int, seed: int = 0) -> None:
        self.resize = eval_steps(prep).resize
        self.pipeline = build_corruption(name, severity, scale=min(prep.input_size) / REFERENCE_SIDE)
        self.seed = seed

    def __call__(self, image: ImageInput, index: int) -> Image.Image:
        self.pipeline.set_random_seed(image_seed(self.seed, index))
        pixels = np.asarray(self.resize(to_pil(image)))  # the suite's decoded copy: at this size already
        return Image.fromarray(self.pipeline(image=pixels)["image"])


def robustness_summary(
    clean_accuracy: float, accuracy: dict[str, dict[int, float]], ece: dict[str, dict[int, float]] | None = None
) -> dict[str, Any]:
    """``robustness.json``: accuracy per corruption and severity, each corruption's mean, the mean corruption
    accuracy (mCA, over every corruption and severity), and each relative to clean accuracy.

    Args:
        clean_accuracy: accuracy on the uncorrupted images.
        accuracy: ``{corruption: {severity: accuracy}}``.
        ece: the calibrated ECE in the same layout, if measured.
    """
    relative = partial(_relative, clean=clean_accuracy)
    corruptions = {}
    for name, by_severity in accuracy.items():
        mean = float(np.mean(list(by_severity.values())))
        corruptions[name] = {
            "description": CORRUPTIONS[name].description if name in CORRUPTIONS else "",
            "levels": {str(s): CORRUPTIONS[name].levels[s - 1] for s in by_severity} if name in CORRUPTIONS else {},
            "accuracy": {str(s): a for s, a in by_severity.items()},
            "relative_accuracy": {str(s): relative(a) for s, a in by_severity.items()},
            "mean_accuracy": mean,
            "relative_mean_accuracy": relative(mean),
        }
        if ece is not None and name in ece:
            corruptions[name]["ece"] = {str(s): e for s, e in ece[name].items()}
    mca = float(np.mean([a for by_severity in accuracy.values() for a in by_severity.values()]))
    return {
        "clean_accuracy": clean_accuracy,
        "mean_corruption_accuracy": mca,
        "relative_mean_corruption_accuracy": relative(mca),
        "corruptions": corruptions,
    }


def _relative(value: float, clean: float) -> float | None:
    return value / clean if clean > 0 else None
