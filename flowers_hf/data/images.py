"""Opening photos safely and converting any image mode to RGB: shared by training, evaluation and the demo."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pi_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from flowers_hf.core.errors import UnreadableImageError

# What phones send besides JPEG: HEIC/HEIF (iPhone photos) through pi-heif, pillow-heif's decoder-only build (its
# wheels are LGPL; pillow-heif's bundle the GPL x265 encoder), and AVIF, which Pillow 12 reads itself. Registered on
# import, so every process that opens images through this package (the demo, the bad-image check, DataLoader
# workers, forked or spawned: the transforms import this module) reads them, datasets.Image's decoding too.
pi_heif.register_heif_opener()
PHONE_FORMATS = ("HEIF", "AVIF")
PHONE_EXTENSIONS = tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in PHONE_FORMATS))

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


# Photos larger than this are decoded at a reduced scale (JPEG draft mode) and shrunk before preprocessing:
# the eval transform resizes to a few hundred pixels anyway, so nothing the model sees is lost.
MAX_SIDE = 1024
# Pillow's own reducing gap (``Image.thumbnail``, ``Image.resize``): reduced decoding (JPEG DCT scaling) and box
# reduction stop while the image is still this many times the size of the resize that follows, whose antialiasing
# filter then spans at least this many of their pixels per output pixel and dominates what they changed.
REDUCING_GAP = 2
DRAFT_SCALES = (2, 4, 8)  # libjpeg's DCT scaling: 1/2, 1/4, 1/8


def open_image(source: str | Path | BinaryIO, max_side: int = MAX_SIDE, resize_to: int | None = None) -> Image.Image:
    """Open a photo as a person sends it: first frame, EXIF orientation applied, RGB, at most ``max_side`` pixels
    (or, with ``resize_to``, reduced only as far as the resize that follows allows).

    Images with more pixels than PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, 89 MP) are refused
    before they are decoded.

    Args:
        source: a path or a binary file object.
        max_side: the longest side kept; larger images are shrunk (aspect ratio kept).
        resize_to: the side the caller resizes the photo to next (a model's eval resize: ``ImageClassifier.open``).
            Instead of shrinking to ``max_side``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale and then any image is
            box-reduced (``Image.reduce``), each by the largest factor that divides both sides (so that the pixel
            grid keeps its geometry) and leaves the shorter side at least ``REDUCING_GAP`` times ``resize_to``: the
            caller's resize is the one resampling that follows.

    Raises:
        UnreadableImageError: with a message for the person who sent the file.
    """
    limit = Image.MAX_IMAGE_PIXELS or float("inf")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PIL's "Corrupt EXIF data": nothing anyone can act on
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL only warns up to twice the limit
            with Image.open(source) as opened:
                opened.draft("RGB", _draft_size(opened.size, max_side, resize_to))  # JPEG only: DCT scaling
                opened.load()  # the first frame of an animation
                image = to_rgb(ImageOps.exif_transpose(opened))  # a copy: the file can close
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImageError(
            f"This image is too large to open safely (more than {limit:,} pixels); send a smaller one."
        ) from error
    # Pillow 12's AVIF plugin raises RuntimeError on corrupt data ("Failed to decode frame 0: …"): found by fuzzing.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, RuntimeError) as error:
        raise UnreadableImageError(f"This file is not an image that can be read ({_reason(error)}).") from error
    if resize_to is not None:
        least = REDUCING_GAP * resize_to
        factor = reduction(image.size, least, range(2, min(image.size) // least + 1))
        return image.reduce(factor) if factor > 1 else image
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def reduction(size: tuple[int, int], least: int, factors: Iterable[int]) -> int:
    """The largest of ``factors`` that divides both sides of ``size`` and leaves the shorter side at least
    ``least``; 1 where none does.

    Args:
        size: ``(width, height)``.
        least: the shorter side may not fall below this.
        factors: the whole factors on offer.
    """
    fits = [f for f in factors if size[0] % f == 0 and size[1] % f == 0 and min(size) // f >= least]
    return max(fits, default=1)


def _draft_size(size: tuple[int, int], max_side: int, resize_to: int | None) -> tuple[int, int]:
    """What to ask of ``Image.draft``, which decodes a JPEG at the largest of 1/2, 1/4 and 1/8 scale that still
    gives at least this size."""
    if resize_to is None:
        return max_side, max_side
    scale = reduction(size, REDUCING_GAP * resize_to, DRAFT_SCALES)
    return size[0] // scale, size[1] // scale


def _reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "unknown format or not an image"
    # PIL names the temporary path: keep it out. libheif's messages end in a newline: one line only.
    return " ".join(str(error).split(" '/")[0].split()) or type(error).__name__
