"""The audited images, every split in one numbered list: where each row comes from, its label, its size and mode,
and its perceptual hash, from one pass over the encoded images."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from flowers_hf.data.images import to_rgb


@dataclass(frozen=True)
class Catalog:
    """Row ``i`` of every array is one image.

    Attributes:
        split: its split name.
        index: its row in that split (as ``train.py`` reads the split, after ``drop_bad_images``).
        file: its path relative to the folder holding all images, the stored name, or ``None``.
        label: its class id.
        class_names: names in class id order.
        width, height: its size in pixels.
        mode: its PIL mode as stored (``RGB``, ``L``, ``CMYK`` …).
        phash: its 64-bit perceptual hash as 64 booleans.
        digest: the SHA-256 of its encoded bytes (equal digests: the same file, an exact copy).
    """

    split: np.ndarray
    index: np.ndarray
    file: list[str | None]
    label: np.ndarray
    class_names: list[str]
    width: np.ndarray
    height: np.ndarray
    mode: list[str]
    phash: np.ndarray
    digest: list[str]

    def __len__(self) -> int:
        return len(self.label)

    def item(self, row: int) -> dict[str, Any]:
        """Where row ``row`` is, as findings name it."""
        return {"split": str(self.split[row]), "index": int(self.index[row]), "file": self.file[row]}


def catalog(data: datasets.DatasetDict, disable_tqdm: bool = False) -> Catalog:
    """Read every image's header and a small decode of it (JPEGs in draft mode) for its hash.

    Args:
        data: the splits, with ``image`` and ``label`` columns.
        disable_tqdm: no progress bar.
    """
    rows: list[tuple] = []
    for name, split in data.items():
        encoded = split.cast_column("image", datasets.Image(decode=False))
        values = tqdm(encoded, desc=f"Hashing the {name} images", disable=disable_tqdm, leave=False)
        rows += [(name, i, value["image"].get("path"), value["label"], *_look(value["image"])) for i, value in
                 enumerate(values)]  # fmt: skip
    split, index, path, label, width, height, mode, phash, digest = zip(*rows, strict=True)
    return Catalog(
        np.array(split), np.array(index), _relative(list(path)), np.array(label),
        list(data["train"].features["label"].names), np.array(width), np.array(height), list(mode), np.stack(phash),
        list(digest),
    )  # fmt: skip


def _look(value: dict[str, Any]) -> tuple[int, int, str, np.ndarray, str]:
    data = value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        size, mode = image.size, image.mode
        image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale at most; pHash looks at 32 x 32 anyway
        bits = imagehash.phash(to_rgb(image)).hash.flatten()
    return size[0], size[1], mode, bits, hashlib.sha256(data).hexdigest()


def _relative(paths: list[str | None]) -> list[str | None]:
    # As bad_images.json names files: relative to the folder that holds them all.
    absolute = [p for p in paths if p and os.path.isabs(p)]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute]) if absolute else None
    return [os.path.relpath(p, root) if root and p and os.path.isabs(p) else p for p in paths]
