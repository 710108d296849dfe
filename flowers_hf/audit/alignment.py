"""Whether two images are one photo: their grey thumbnails aligned over scale and shift, scored by OpenCV's
normalised cross-correlation. Hashes and features propose pairs; a near copy is reported only when this check
passes, since features also pair two photos of one class."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import datasets
import numpy as np
from PIL import Image

from flowers_hf.audit.catalog import Catalog
from flowers_hf.data.images import to_rgb

THUMBNAIL_SIDE = 64  # the shorter side compared
BLUR_SIGMA = 1.0  # one pixel of the thumbnail: JPEG noise and resampling differences smoothed, the layout kept
SHARES = np.linspace(1.0, 0.7, 13)  # the share of one image's width the other covers: crops of up to 15 % a side
MARGIN = 0.1  # the template's border left out, so that a copy shifted by up to 5 % still fits inside


def thumbnail(value: dict[str, Any]) -> np.ndarray:
    """An encoded image (``{"bytes", "path"}``) as a blurred grey array whose shorter side is ``THUMBNAIL_SIDE``."""
    data = value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (2 * THUMBNAIL_SIDE, 2 * THUMBNAIL_SIDE))  # JPEG: decoded at a reduced scale
        grey = np.asarray(to_rgb(image).convert("L"), dtype=np.float32)
    return cv2.GaussianBlur(_scaled(grey, THUMBNAIL_SIDE / min(grey.shape)), (0, 0), BLUR_SIGMA)


def aligned_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The highest correlation of either thumbnail placed inside the other at any of ``SHARES`` and any shift:
    1 for the same pixels, near 1 for a resized, recompressed or cropped copy; -1 where neither has texture."""
    return max(_placed_inside(a, b), _placed_inside(b, a))


def _placed_inside(a: np.ndarray, b: np.ndarray) -> float:
    best = -1.0
    for share in SHARES:
        scaled = _scaled(b, share * a.shape[1] / b.shape[1])
        dy, dx = int(scaled.shape[0] * MARGIN / 2), int(scaled.shape[1] * MARGIN / 2)
        template = scaled[dy : scaled.shape[0] - dy, dx : scaled.shape[1] - dx]
        if template.shape[0] > a.shape[0] or template.shape[1] > a.shape[1] or template.std() < 1e-3:
            continue  # taller than the other at this width, or flat (no correlation to speak of)
        best = max(best, float(cv2.matchTemplate(a, template, cv2.TM_CCOEFF_NORMED).max()))
    return best


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    size = (max(round(image.shape[1] * factor), 1), max(round(image.shape[0] * factor), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class Thumbnails:
    """Each catalog row's thumbnail, made when a pair first asks for it (the most recent few thousand kept)."""

    def __init__(self, data: datasets.DatasetDict, cat: Catalog, cached: int = 4096) -> None:
        self._encoded = {name: split.cast_column("image", datasets.Image(decode=False)) for name, split in data.items()}
        self._cat = cat
        self.of = lru_cache(maxsize=cached)(self._make)

    def _make(self, row: int) -> np.ndarray:
        return thumbnail(self._encoded[str(self._cat.split[row])][int(self._cat.index[row])]["image"])

    def similarity(self, i: int, j: int) -> float:
        """``aligned_similarity`` of rows ``i`` and ``j``."""
        return aligned_similarity(self.of(i), self.of(j))
