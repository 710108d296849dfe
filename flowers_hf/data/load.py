"""One entry point for every Flowers-102 source, and a summary of what was loaded."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from flowers_hf.config import DataArguments
from flowers_hf.data.folder import is_saved_dataset, load_imagefolder, load_saved
from flowers_hf.data.hub_dataset import load_from_hub
from flowers_hf.data.oxford import is_oxford_folder, load_oxford
from flowers_hf.data.standardize import SPLITS, standardize
from flowers_hf.data.synthetic import load_synthetic
from flowers_hf.errors import MissingFileError

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


def load_flowers(source: str | None = None, args: DataArguments | None = None) -> datasets.DatasetDict:
    """Load Flowers-102 (or the synthetic stand-in) as splits train, validation and test.

    Each split has an ``image`` column (``datasets.Image``) and a ``label`` column (``ClassLabel``
    whose names are flower names). Images stay encoded: they are decoded on access.

    Args:
        source: 'synthetic', a local folder (Oxford distribution, imagefolder tree or ``save_to_disk``
            output) or a Hub data set id. Default: ``args.dataset``.
        args: the data options (split fractions and seed, synthetic set, cache); defaults if ``None``.
    """
    args = args or DataArguments()
    source = source or args.dataset
    raw = _load_raw(source, args)
    return standardize(raw, args.validation_fraction, args.test_fraction, args.split_seed)


def _load_raw(source: str, args: DataArguments) -> datasets.DatasetDict:
    if source == SYNTHETIC:
        return load_synthetic(
            num_classes=args.synthetic_num_classes,
            images_per_class=args.synthetic_images_per_class,
            image_size=args.synthetic_image_size,
            image_format=args.synthetic_image_format,
            seed=args.synthetic_seed,
            cache_dir=args.cache_dir,
        )
    path = Path(source).expanduser()
    if path.is_dir():
        if is_saved_dataset(path):
            return load_saved(path)
        if is_oxford_folder(path):
            return load_oxford(path, cache_dir=args.cache_dir)
        return load_imagefolder(path, cache_dir=args.cache_dir)
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise MissingFileError(f"'{source}' is not a folder of images or a data set (nothing usable is there)")
    return load_from_hub(source, revision=args.dataset_revision, cache_dir=args.cache_dir)


def label_counts(split: datasets.Dataset, num_classes: int) -> list[int]:
    """Images per class id, in class id order (reads the label column only)."""
    tally = Counter(split.with_format(None)["label"])
    return [tally.get(i, 0) for i in range(num_classes)]


def summarize(data: datasets.DatasetDict, source: str) -> dict[str, Any]:
    """What was loaded: class names, split sizes and per-class counts (class id order) of each split."""
    names = data["train"].features["label"].names
    counts = {split: label_counts(data[split], len(names)) for split in SPLITS}
    return {
        "source": source,
        "num_classes": len(names),
        "class_names": names,
        "splits": {split: len(data[split]) for split in SPLITS},
        "class_counts": counts,
    }
