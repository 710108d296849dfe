"""Images as HWC uint8 RGB arrays, and the decoded copy's storage format (``flowers_hf.data.cache``): PPM, a short
header then the raw RGB bytes, written with PIL and read back as a NumPy view of the bytes, without decoding.

Every consumer of the copy reads it through :func:`rgb_array` (the training and eval transforms, the corruption
suite, the audit's features): the copy's ``image`` column comes undecoded (``datasets.Image(decode=False)``), so
``datasets`` hands over the stored bytes and no PIL image is made per sample.
"""

from __future__ import annotations

import io
import re
from typing import Any

import datasets
import numpy as np
from PIL import Image

from flowers_hf.data.images import to_rgb

# An image as a transform takes it: a PIL image (the originals), an HWC uint8 RGB array, or a row of an undecoded
# ``datasets.Image`` column ({"bytes": ..., "path": ...}; the decoded copy's PPM bytes).
ImageInput = Image.Image | np.ndarray | dict[str, Any]

# PIL writes "P6\n<width> <height>\n255\n"; anything else (comments, 16-bit) goes through PIL.
_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+255\s")


def encode_ppm(image: Image.Image) -> dict[str, Any]:
    """An RGB image as a ``datasets.Image`` value holding its PPM bytes (uncompressed: reading it is a copy).

    Args:
        image: an RGB PIL image.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PPM")
    return {"bytes": buffer.getvalue(), "path": None}


def rgb_array(image: ImageInput) -> np.ndarray:
    """``image`` as an HWC uint8 RGB array: PPM bytes as a read-only view of them (no decoding), a PIL image or
    other encoded bytes through ``to_rgb``.

    Args:
        image: a PIL image, an HWC uint8 RGB array, or an undecoded ``datasets.Image`` value.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HWC uint8 RGB array, got {image.dtype} of shape {image.shape}")
        return image
    if isinstance(image, dict):
        pixels = _ppm_view(image.get("bytes"))
        if pixels is not None:
            return pixels
        image = datasets.Image().decode_example(image)
    return np.asarray(to_rgb(image))


def to_pil(image: ImageInput) -> Image.Image:
    """``image`` as an RGB PIL image (``to_rgb``), for the steps that take one (timm's eval resize); arrays are
    wrapped, not decoded."""
    return to_rgb(image) if isinstance(image, Image.Image) else Image.fromarray(rgb_array(image))


def _ppm_view(data: bytes | None) -> np.ndarray | None:
    match = _PPM_HEADER.match(data) if data else None
    if match is None:
        return None
    width, height = int(match[1]), int(match[2])
    if len(data) - match.end() != width * height * 3:
        return None
    return np.frombuffer(data, np.uint8, count=width * height * 3, offset=match.end()).reshape(height, width, 3)
