"""The photos of the latency benchmark (``bench/inference.py``): a phone's 12-megapixel JPEG, synthetic flowers as
the synthetic set encodes them, and the calibration batches made of those."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

from flowers_hf.data.images import open_image
from flowers_hf.data.synthetic import draw_flower, encode, make_classes
from flowers_hf.data.transforms import ImageTransform

PHONE_SIDE = 4000  # 4000 x 3000: 12 MP, 4:3, as a phone's main camera stores it
PHONE_QUALITY = 92
ORIENTATION_TAG, PORTRAIT = 0x0112, 6  # EXIF: "rotate 90° clockwise to view", a photo taken upright


def phone_jpeg(side: int = PHONE_SIDE, seed: int = 0) -> bytes:
    """A synthetic flower as a phone sends it (:func:`phone_photo`), JPEG quality 92 (4:2:0 chroma), the same every
    time.

    Args:
        side: the longer side in pixels.
        seed: which flower, pose and noise.
    """
    rng = np.random.default_rng(seed)
    # Drawn at 3/8 of the size and enlarged, as a phone's optics and demosaicing leave edges a few pixels wide.
    drawn = draw_flower(make_classes(1, seed)[0], round(side * 9 / 32), rng)
    photo = phone_photo(drawn, side, rng)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=PHONE_QUALITY, exif=photo.info["exif"])
    return buffer.getvalue()


def phone_photo(picture: Image.Image, side: int = PHONE_SIDE, rng: np.random.Generator | None = None) -> Image.Image:
    """``picture`` as a phone's sensor stores a portrait shot of it: cropped to 3:4 and enlarged to ``side`` high,
    sensor noise added at full resolution, stored landscape with the EXIF orientation that turns it upright
    (``info["exif"]``, to save with it).

    Args:
        picture: what was photographed.
        side: the longer side in pixels.
        rng: the noise's generator (default: seeded with 0).
    """
    rng = rng or np.random.default_rng(0)
    upright = ImageOps.fit(picture, (side * 3 // 4, side), Image.Resampling.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as the sensor saw it; the tag turns it back
    pixels = np.asarray(stored, dtype=np.float32)
    pixels += rng.normal(0.0, 4.0, pixels.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = PORTRAIT
    photo.info["exif"] = exif.tobytes()
    return photo


def drawn_jpegs(count: int, side: int, seed: int = 0) -> list[bytes]:
    """``count`` synthetic flowers as the synthetic set encodes them (JPEG quality 90, shorter side ``side``).

    Args:
        count: how many.
        side: their shorter side in pixels.
        seed: which flowers.
    """
    classes, rng = make_classes(min(count, 20), seed), np.random.default_rng(seed)
    return [encode(draw_flower(classes[i % len(classes)], side, rng), "jpeg") for i in range(count)]


def calibration_batches_of(photos: list[bytes], transform: ImageTransform, batch_size: int = 32) -> list[np.ndarray]:
    """The photos through the eval ``transform`` in batches: what int8 calibrates on (``quantize_int8``).

    Args:
        photos: encoded files.
        transform: ``build_eval_transform(prep)``.
        batch_size: images per batch.
    """
    tensors = [transform(open_image(io.BytesIO(photo))) for photo in photos]
    return [torch.stack(tensors[i : i + batch_size]).numpy() for i in range(0, len(tensors), batch_size)]
