"""A built-in, deterministic set of images that are no class of any flower set: shapes, textures and scene-like
gradients, the out-of-distribution images of ``python -m flowers_hf.evaluate RUN --ood synthetic_ood``.

Its classes are the kinds of picture, so that it loads like any other source (splits train / validation / test in
the synthetic set's proportions); only its images matter to ``--ood``. Image ``i`` of kind ``k`` depends only on
``(seed, k, i)``; the images are drawn at the synthetic set's size and cached by ``datasets`` like it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import flowers_hf.data.synthetic as synthetic
from flowers_hf.data.synthetic import drawn_examples, split_counts

logger = logging.getLogger(__name__)

KINDS = ("shapes", "stripes", "checks", "dots", "noise", "scene")


def draw_picture(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one image of ``kind`` (one of :data:`KINDS`).

    Args:
        kind: what to draw.
        size: the shorter side in pixels; the longer one is up to 1.5 times that, as in the synthetic flowers.
        rng: the image's own random generator.
    """
    aspect = rng.uniform(1.0, 1.5)
    width, height = (round(size * aspect), size) if rng.random() < 0.5 else (size, round(size * aspect))
    image = _DRAW[kind](width, height, rng)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, rng.uniform(1.0, 6.0), (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _shapes(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    # Rectangles, ellipses and triangles on a flat background: edges and colours, no petals.
    image = Image.new("RGB", (width, height), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(1, 5)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.15, 0.6) * width, rng.uniform(0.15, 0.6) * height
        box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle(box, fill=_colour(rng))
        elif shape == 1:
            draw.ellipse(box, fill=_colour(rng))
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (x, box[1])], fill=_colour(rng))
    return image


def _stripes(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    angle, period = rng.uniform(0, math.pi), rng.uniform(4, 16)
    y, x = np.mgrid[0:height, 0:width]
    phase = (x * math.cos(angle) + y * math.sin(angle)) / period
    return _two_tone(np.floor(phase) % 2 == 0, rng)


def _checks(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    cell = rng.uniform(4, 14)
    y, x = np.mgrid[0:height, 0:width]
    return _two_tone((np.floor(x / cell) + np.floor(y / cell)) % 2 == 0, rng)


def _dots(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (width, height), _colour(rng))
    draw, ink, spacing = ImageDraw.Draw(image), _colour(rng), rng.uniform(6, 14)
    radius = spacing * rng.uniform(0.15, 0.4)
    for cy in np.arange(spacing / 2, height, spacing):
        for cx in np.arange(spacing / 2, width, spacing):
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=ink)
    return image


def _noise(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    # Smoothed colour noise: cloud- or sand-like texture without shape.
    coarse = rng.integers(0, 256, (max(2, height // 6), max(2, width // 6), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.5)))


def _scene(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    # Sky over ground with a horizon, a sun and a hill: a landscape's layout, no subject.
    horizon = int(height * rng.uniform(0.35, 0.7))
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = (1 - t) * np.array(_colour(rng)) + t * np.array(_colour(rng))
    ground = np.array(_colour(rng), dtype=np.float32) * (0.6 + 0.4 * t)
    rows = np.where(np.arange(height)[:, None, None] < horizon, sky, ground)
    image = Image.fromarray(np.broadcast_to(rows, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    sun, r = (rng.uniform(0, width), rng.uniform(0, horizon)), rng.uniform(0.05, 0.15) * height
    draw.ellipse([sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r], fill=_colour(rng))
    peak = (rng.uniform(0, width), horizon - rng.uniform(0.1, 0.3) * height)
    draw.polygon([(peak[0] - width * 0.5, horizon), peak, (peak[0] + width * 0.5, horizon)], fill=_colour(rng))
    return image


def _two_tone(mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(np.where(mask[..., None], _colour(rng), _colour(rng)).astype(np.uint8))


_DRAW = {
    "shapes": _shapes,
    "stripes": _stripes,
    "checks": _checks,
    "dots": _dots,
    "noise": _noise,
    "scene": _scene,
}


def generate_examples(split: str, images_per_kind: int, image_size: int, image_format: str, seed: int):
    """Yield the examples of one split (a generator for ``Dataset.from_generator``)."""

    def draw(kind_id: int, index: int) -> Image.Image:
        return draw_picture(KINDS[kind_id], image_size, np.random.default_rng([seed, 3, kind_id, index]))

    yield from drawn_examples(draw, list(range(len(KINDS))), split, images_per_kind, image_format, "synthetic_ood")


def load_synthetic_ood(
    images_per_kind: int, image_size: int, image_format: str, seed: int, cache_dir: str | None
) -> datasets.DatasetDict:
    """Build (or load from the ``datasets`` cache) the set, a class per kind of picture. The options come from
    ``DataArguments`` (``--synthetic_*``, shared with the flowers), which holds their defaults.

    Args:
        images_per_kind: images of each kind over the three splits, split like the synthetic flowers (80: 60 test).
        image_size, image_format, seed, cache_dir: as for the synthetic flowers
            (:func:`flowers_hf.data.synthetic.load_synthetic`).
    """
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(KINDS))})
    kwargs = {"images_per_kind": images_per_kind, "image_size": image_size, "image_format": image_format, "seed": seed}
    logger.info("Synthetic out-of-distribution images: %d kinds x %d at %d px, seed %d", len(KINDS),
                images_per_kind, image_size, seed)  # fmt: skip
    splits = {
        split: datasets.Dataset.from_generator(
            generate_examples,
            features=features,
            gen_kwargs={"split": split, **kwargs},
            cache_dir=cache_dir,
            split=datasets.NamedSplit(split),
            fingerprint=_fingerprint({"split": split, **kwargs}),
        )
        for split in split_counts(images_per_kind)
    }
    return datasets.DatasetDict(splits)


def _fingerprint(gen_kwargs: dict) -> str:
    # The cache key covers the drawing code (this module, and the flowers' that draws its examples).
    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(synthetic.__file__).read_bytes())
    digest.update(json.dumps(gen_kwargs, sort_keys=True).encode())
    return digest.hexdigest()[:32]
