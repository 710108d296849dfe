"""Decoded, pre-resized images, written once: the data path without JPEG decoding every epoch (``train.py``'s
default, ``--cache_images``).

Training crops at random scales (``RandomResizedCrop``) and resizes to the input size, so a photo kept at a
shorter side a little above the input size gives nearly the same crops as the original at a fraction of the
work. Validation and test are stored already resized and centre-cropped as the eval transform does it, so
every evaluation reads exactly the model's input (``build_eval_transform(cropped=True)``: bit-identical to the
eval transform on the originals). The copies are stored uncompressed (PPM in the ``datasets.Image`` column) and come
back with that column undecoded: every consumer reads the stored bytes as a NumPy array (``pixels.rgb_array``), a
copy, not a decode, and no PIL image per sample. ``datasets`` caches each beside its source, keyed by the
fingerprint of the source and of the resize (its size included): reruns and ``python -m flowers_hf.evaluate`` reuse
it, a changed source or size writes a new one. The corruption suite caches at timm's eval resize, before the crop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import datasets
from PIL import Image

from flowers_hf.core.disk import disk_full_guard
from flowers_hf.core.errors import DiskFullError
from flowers_hf.data.images import to_rgb
from flowers_hf.data.pixels import encode_ppm
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import eval_crop

logger = logging.getLogger(__name__)

DEFAULT_SIDE_SCALE = 1.15  # 224 px input: shorter side 258, as timm's 0.875 crop_pct gives 256 for evaluation


def cache_splits(data: datasets.DatasetDict, prep: Preprocessing, num_proc: int | None = None) -> datasets.DatasetDict:
    """Every split decoded once: train shrunk to ``cached_side(prep)``, the others resized and centre-cropped to
    the input size (``eval_crop``).

    Args:
        data: splits with an ``image`` column.
        prep: the model's input contract.
        num_proc: processes that resize.
    """
    crop = eval_crop(prep)
    return datasets.DatasetDict(
        {
            name: cache_resized(split, cached_side(prep), num_proc)
            if name == "train"
            else cache_images(split, crop, f"Resizing and cropping the {name} images once", num_proc)
            for name, split in data.items()
        }
    )


def cached_side(prep: Preprocessing, scale: float = DEFAULT_SIDE_SCALE) -> int:
    """The shorter side to keep: ``scale`` times the larger input side, rounded up."""
    return math.ceil(max(prep.input_size) * scale)


def cache_resized(split: datasets.Dataset, shorter_side: int, num_proc: int | None = None) -> datasets.Dataset:
    """``split`` with every image decoded once, shrunk to ``shorter_side`` (antialiased bicubic; never enlarged)
    and stored uncompressed; ``datasets`` caches the result beside the source, so later runs reuse it.

    Args:
        split: a split with an ``image`` column (``datasets.Image``).
        shorter_side: the shorter side of the stored images in pixels.
        num_proc: processes that resize (``Dataset.map``).
    """
    if shorter_side < 1:
        raise ValueError(f"shorter_side must be positive, got {shorter_side}")
    resize = partial(_shrink, shorter_side=shorter_side)
    return cache_images(split, resize, f"Caching images at {shorter_side} px", num_proc)


def cache_images(
    split: datasets.Dataset,
    resize: Callable[[Image.Image], Image.Image],
    description: str,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """``split`` with every image decoded once, converted to RGB, passed through ``resize`` and stored
    uncompressed (cached by ``datasets`` when ``split`` lives on disk); its ``image`` column comes undecoded (the
    PPM bytes, which ``pixels.rgb_array`` reads as an array).

    Args:
        split: a split with an ``image`` column (``datasets.Image``).
        resize: what to do to each RGB image (picklable, so that ``datasets`` can fingerprint it).
        description: the progress bar's text.
        num_proc: processes that resize (``Dataset.map``).
    """
    # datasets (5.2) writes the copy to a temporary file and moves it into place once complete, so a failed write
    # leaves no copy that a later run would take for a whole one.
    where = Path(split.cache_files[0]["filename"]).parent if split.cache_files else None
    before = _temporary_files(where)
    try:
        with disk_full_guard(
            where or "the datasets cache", _copy_bytes(split, resize), then="the same command builds the copy again"
        ):
            written = split.map(
                _resize_batch,
                batched=True,
                batch_size=64,
                fn_kwargs={"resize": resize},
                features=split.features,
                num_proc=num_proc,
                desc=description,
            )
    except DiskFullError:
        # datasets 5.2 leaves the temporary file of a copy cut short by a full disk (tmpXXXXXXXX beside its
        # cache): never used again, but it holds the space the rerun needs.
        for leftover in _temporary_files(where) - before:
            leftover.unlink(missing_ok=True)
        raise
    # Undecoded on reading only: the file on disk (and so its cache key) is the one written with decoding on.
    return written.cast_column("image", datasets.Image(decode=False))


def _temporary_files(folder: Path | None) -> set[Path]:
    """The files ``datasets`` writes a cache file into before moving it into place (``tempfile``'s ``tmp*``)."""
    return set(folder.glob("tmp*")) if folder is not None else set()


def _copy_bytes(split: datasets.Dataset, resize: Callable[[Image.Image], Image.Image]) -> int:
    """About what the copy of ``split`` takes: its first image's raw size after ``resize``, for every image."""
    if len(split) == 0:
        return 0
    width, height = resize(to_rgb(split[0]["image"])).size
    return 3 * width * height * len(split)


def _resize_batch(batch: dict[str, list], resize: Callable[[Image.Image], Image.Image]) -> dict[str, list]:
    batch["image"] = [encode_ppm(resize(to_rgb(image))) for image in batch["image"]]
    return batch


def _shrink(image: Image.Image, shorter_side: int) -> Image.Image:
    width, height = image.size
    scale = shorter_side / min(width, height)
    if scale >= 1:
        return image
    size = (max(shorter_side, round(width * scale)), max(shorter_side, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)
