"""A built-in, deterministic, procedurally drawn flower-like data set for offline runs and tests.

Each class is a fixed combination of petal count, petal shape, petal colour, centre colour and
number of petal rings; any two classes differ in at least two of these. Each image draws its
class's flower with a random pose, scale, position, light, background and noise, so that a CNN
can learn the classes and augmentation matters. Image ``i`` of class ``c`` depends only on
``(seed, c, i)``: asking for more images or classes keeps the earlier ones unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw

from flowers_hf.core.errors import ArgumentError
from flowers_hf.data.labels import FLOWER_NAMES

logger = logging.getLogger(__name__)

PETAL_COUNTS = (3, 4, 5, 6, 8, 10, 13)
# Half-width profile exponents (a, b) of u**a * (1-u)**b along the petal, u = 0 at the centre.
PETAL_SHAPES = {"round": (0.5, 0.5), "pointed": (0.6, 1.4), "spatulate": (1.4, 0.35)}
PETAL_HUES = tuple(range(0, 360, 36))  # ten hue bins; per-image jitter stays well inside a bin
CENTRE_COLOURS = ((250, 205, 40), (70, 40, 20), (245, 245, 235), (120, 40, 140))
RINGS = (1, 2)
# Official Oxford split per class: 10 train, 10 validation, the rest (on average 60) test.
TRAIN_SHARE = VALIDATION_SHARE = 0.125


@dataclass(frozen=True)
class FlowerClass:
    """What makes a synthetic class: fixed for all of its images."""

    petals: int
    shape: str
    hue: int
    centre: tuple[int, int, int]
    rings: int


def make_classes(num_classes: int, seed: int) -> list[FlowerClass]:
    """Pick ``num_classes`` attribute combinations, each differing from all others in two or more.

    Args:
        num_classes: how many classes to make.
        seed: seed of the shuffle that orders the candidate combinations.
    """
    combos = list(itertools.product(PETAL_COUNTS, PETAL_SHAPES, PETAL_HUES, CENTRE_COLOURS, RINGS))
    order = np.random.default_rng([seed, 1]).permutation(len(combos))
    chosen: list[tuple] = []
    for index in order:
        combo = combos[index]
        if all(sum(a != b for a, b in zip(combo, other, strict=True)) >= 2 for other in chosen):
            chosen.append(combo)
            if len(chosen) == num_classes:
                return [FlowerClass(*combo) for combo in chosen]
    raise ArgumentError(f"the synthetic set can make at most {len(chosen)} distinct classes, {num_classes} asked")


def class_names(num_classes: int) -> list[str]:
    """Flower names for the synthetic classes, so that every tool shows names as on the real data."""
    return [FLOWER_NAMES[i] if i < len(FLOWER_NAMES) else f"synthetic flower {i}" for i in range(num_classes)]


def split_counts(images_per_class: int) -> dict[str, int]:
    """Images per class in each split, in the official proportions (80 per class gives 10/10/60)."""
    train = max(1, round(images_per_class * TRAIN_SHARE))
    validation = max(1, round(images_per_class * VALIDATION_SHARE))
    test = images_per_class - train - validation
    if test < 1:
        raise ArgumentError(f"images_per_class={images_per_class} leaves no test image; use at least 3")
    return {"train": train, "validation": validation, "test": test}


def draw_flower(spec: FlowerClass, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one photo-like image of a flower of class ``spec``.

    Args:
        spec: the class's fixed attributes.
        size: the shorter side of the image in pixels; the longer side is up to 1.5 times that.
        rng: the image's own random generator (pose, scale, light, background, noise).
    """
    aspect = rng.uniform(1.0, 1.5)
    width, height = (round(size * aspect), size) if rng.random() < 0.5 else (size, round(size * aspect))
    ss = 2 if size < 256 else 1  # supersample small images so that petal edges are anti-aliased
    canvas = _background(width * ss, height * ss, rng)
    draw = ImageDraw.Draw(canvas)
    radius = rng.uniform(0.28, 0.45) * min(width, height) * ss
    cx = width * ss * (0.5 + rng.uniform(-0.12, 0.12))
    cy = height * ss * (0.5 + rng.uniform(-0.12, 0.12))
    rotation = rng.uniform(0, 2 * math.pi)
    colour = _petal_colour(spec.hue, rng)
    for ring in range(spec.rings):
        scale = 1.0 - 0.38 * ring
        shade = tuple(int(c * (1.0 - 0.18 * ring)) for c in colour)
        offset = math.pi / spec.petals * ring
        _draw_petals(draw, spec, (cx, cy), radius * scale, rotation + offset, shade, rng)
    _draw_centre(draw, spec.centre, (cx, cy), radius * rng.uniform(0.16, 0.24), rng)
    if ss > 1:
        canvas = canvas.resize((width, height), Image.Resampling.BOX)
    return _finish(canvas, rng)


def encode(image: Image.Image, image_format: str) -> bytes:
    """Encode like a photograph (JPEG, quality 90) or losslessly (PNG)."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def generate_examples(
    split: str,
    class_ids: list[int],
    num_classes: int,
    images_per_class: int,
    image_size: int,
    image_format: str,
    seed: int,
):
    """Yield the examples of one split for the given classes (a generator for ``Dataset.from_generator``)."""
    specs = make_classes(num_classes, seed)

    def draw(class_id: int, index: int) -> Image.Image:
        return draw_flower(specs[class_id], image_size, np.random.default_rng([seed, 2, class_id, index]))

    yield from drawn_examples(draw, class_ids, split, images_per_class, image_format, "synthetic")


def drawn_examples(
    draw: Callable[[int, int], Image.Image],
    labels: list[int],
    split: str,
    images_per_class: int,
    image_format: str,
    prefix: str,
):
    """Yield ``{"image", "label"}`` for each label's images of ``split``, image ``index`` drawn by ``draw(label,
    index)``: the splits take consecutive indices, train first, in the proportions of :func:`split_counts`."""
    counts = split_counts(images_per_class)
    start = {"train": 0, "validation": counts["train"], "test": counts["train"] + counts["validation"]}[split]
    extension = "jpg" if image_format == "jpeg" else "png"
    for label in labels:
        for index in range(start, start + counts[split]):
            name = f"{prefix}_{label:03d}_{index:04d}.{extension}"
            yield {"image": {"bytes": encode(draw(label, index), image_format), "path": name}, "label": label}


def load_synthetic(
    num_classes: int = 102,
    images_per_class: int = 80,
    image_size: int = 64,
    image_format: str = "jpeg",
    seed: int = 0,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Build (or load from the ``datasets`` cache) the synthetic set with train, validation and test.

    Args:
        num_classes: number of classes (up to several hundred).
        images_per_class: images per class over the three splits, split 12.5/12.5/75 % like Oxford.
        image_size: shorter side of each image in pixels.
        image_format: 'jpeg' (photo-like) or 'png'.
        seed: the same seed gives the same images.
        cache_dir: where ``datasets`` keeps the generated Arrow files.
    """
    make_classes(num_classes, seed)  # fail before generating anything if too many classes are asked
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names(num_classes))}
    )
    kwargs = dict(
        class_ids=list(range(num_classes)),
        num_classes=num_classes,
        images_per_class=images_per_class,
        image_size=image_size,
        image_format=image_format,
        seed=seed,
    )
    logger.info(
        "Synthetic flowers: %d classes x %d images at %d px (%s), seed %d",
        num_classes,
        images_per_class,
        image_size,
        image_format,
        seed,
    )
    splits = {}
    for split, count in split_counts(images_per_class).items():
        gen_kwargs = {"split": split, **kwargs}
        splits[split] = datasets.Dataset.from_generator(
            generate_examples,
            features=features,
            gen_kwargs=gen_kwargs,
            cache_dir=cache_dir,
            split=datasets.NamedSplit(split),
            # Generation shards by class over the cores; worth the process start-up only for larger sets.
            num_proc=min(os.cpu_count() or 1, num_classes) if count * num_classes >= 2000 else None,
            fingerprint=_fingerprint(gen_kwargs),
        )
    return datasets.DatasetDict(splits)


def _fingerprint(gen_kwargs: dict) -> str:
    # The cache key covers this module's code too, so that a change to the drawing invalidates old images.
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps(gen_kwargs, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    # A vertical gradient between two foliage/earth/sky tones with blurred leaf shapes on it.
    top, bottom = _background_tone(rng), _background_tone(rng)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    gradient = (1 - t) * top + t * bottom
    canvas = Image.fromarray(np.broadcast_to(gradient, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 9)):
        leaf = _background_tone(rng, leaf=True)
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        length = rng.uniform(0.15, 0.4) * min(width, height)
        points = _petal_polygon(
            centre, length, length * rng.uniform(0.25, 0.45), rng.uniform(0, 2 * math.pi), (0.6, 0.6)
        )
        draw.polygon(points, fill=tuple(int(c) for c in leaf))
    return canvas


def _background_tone(rng: np.random.Generator, leaf: bool = False) -> np.ndarray:
    if leaf or rng.random() < 0.6:
        base = np.array([40, 90, 35]) if leaf else np.array([60, 110, 50])  # greens
    else:
        base = np.array([110, 85, 60]) if rng.random() < 0.5 else np.array([120, 160, 200])  # earth or sky
    return np.clip(base + rng.normal(0, 18, 3), 0, 255).astype(np.float32)


def _petal_colour(hue: int, rng: np.random.Generator) -> tuple[int, int, int]:
    jittered = (hue + rng.uniform(-6, 6)) % 360
    saturation = rng.uniform(0.55, 0.9)
    value = rng.uniform(0.75, 1.0)
    hsv = Image.new("HSV", (1, 1), (int(jittered / 360 * 255), int(saturation * 255), int(value * 255)))
    return hsv.convert("RGB").getpixel((0, 0))


def _draw_petals(draw, spec, centre, radius, rotation, colour, rng) -> None:
    width = radius * min(0.9, 2.6 / spec.petals + 0.15)
    outline = tuple(int(c * 0.7) for c in colour)
    for k in range(spec.petals):
        angle = rotation + 2 * math.pi * k / spec.petals + rng.normal(0, 0.04)
        length = radius * rng.uniform(0.92, 1.05)
        draw.polygon(
            _petal_polygon(centre, length, width, angle, PETAL_SHAPES[spec.shape]), fill=colour, outline=outline
        )


def _petal_polygon(centre, length, width, angle, exponents) -> list[float]:
    outline = _unit_petal(*exponents) * (length, width / 2)
    cos, sin = math.cos(angle), math.sin(angle)
    rotated = outline @ np.array([[cos, sin], [-sin, cos]]) + centre
    return rotated.ravel().tolist()


@functools.cache
def _unit_petal(a: float, b: float, steps: int = 16) -> np.ndarray:
    # Outline of a petal of length 1 and half-width 1 along +x: out along the upper edge, back along the lower.
    u = np.linspace(0.0, 1.0, steps)
    half = u**a * (1 - u) ** b
    half = half / half.max()
    return np.stack([np.concatenate([u, u[::-1]]), np.concatenate([half, -half[::-1]])], axis=1)


def _draw_centre(draw, colour, centre, radius, rng) -> None:
    cx, cy = centre
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    dot = tuple(int(c * 0.6) for c in colour)
    for _ in range(6):
        r, phi = radius * 0.6 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        x, y, s = cx + r * math.cos(phi), cy + r * math.sin(phi), radius * 0.12
        draw.ellipse([x - s, y - s, x + s, y + s], fill=dot)


def _finish(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Light and sensor noise: a global brightness change and Gaussian noise of random strength.
    array = np.asarray(image, dtype=np.float32) * rng.uniform(0.75, 1.15)
    array += rng.normal(0.0, rng.uniform(2.0, 8.0), array.shape).astype(np.float32)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
