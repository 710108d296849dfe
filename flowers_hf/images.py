"""Image mode handling shared by training, evaluation and the demo."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Transparent pixels are shown on white, as an image viewer would show a cut-out flower.
BACKGROUND = (255, 255, 255)
_HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as 8-bit RGB, whatever its mode.

    Palette and alpha images are composited on white, 16-bit and float images are rescaled to 8 bits
    (a plain ``convert("RGB")`` clips them to white), CMYK, L and 1 go through PIL's conversion.

    Args:
        image: a PIL image in any mode.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f":
        scale = 255.0 if float(array.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).astype(np.uint8)
    # 16-bit data keeps its top 8 bits; 32-bit 'I' images usually hold 16-bit values (PNG), or 8-bit ones.
    sixteen_bit = array.dtype.itemsize == 2 or int(array.max(initial=0)) > 255
    shift = 8 if sixteen_bit else 0
    return np.clip(array.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
