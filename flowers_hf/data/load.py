"""One entry point for every image-classification source, and a summary of what was loaded."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from flowers_hf.core.errors import MissingFileError
from flowers_hf.data.arguments import PINNED_REVISIONS, DataArguments
from flowers_hf.data.folder import is_saved_dataset, load_folder, load_saved
from flowers_hf.data.holdout import hold_out_classes
from flowers_hf.data.hub_dataset import load_from_hub
from flowers_hf.data.identity import (
    SYNTHETIC,
    SYNTHETIC_OOD,
    DatasetIdentity,
    identify,
    is_hub_dataset_id,
    warn_if_not_comparable,
)
from flowers_hf.data.oxford import is_oxford_folder, load_oxford
from flowers_hf.data.standardize import SPLITS, standardize
from flowers_hf.data.synthetic import load_synthetic
from flowers_hf.data.synthetic_ood import load_synthetic_ood

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedData:
    """A loaded data set: its splits and what it is (decided once, here; the model's ``config.json`` records it).

    Attributes:
        splits: train, validation and test (and the held-out classes' images with ``--holdout_classes``).
        identity: its name, link, whether it is Flowers-102 in the official split, the split sizes as loaded.
    """

    splits: datasets.DatasetDict
    identity: DatasetIdentity


def load_data(source: str | None = None, args: DataArguments | None = None) -> LoadedData:
    """Load an image-classification data set (Flowers-102 by default, or the synthetic stand-in) as splits train,
    validation and test, with its identity (``LoadedData``).

    Each split has an ``image`` column (``datasets.Image``) and a ``label`` column (``ClassLabel`` with the data
    set's class names; the canonical flower names for a Flowers-102 source). Images stay encoded: they are decoded
    on access.

    Args:
        source: 'synthetic', a local folder (Oxford distribution, ``save_to_disk`` output, or anything
            ``datasets.load_dataset`` reads from a folder) or a Hub data set id. Default: ``args.dataset``.
        args: the data options (split fractions and seed, synthetic set, columns, cache); defaults if ``None``.
    """
    args = args or DataArguments()
    source = source or args.dataset
    identity = identify(source, args.class_names, args.subject, revision=_revision(source, args))
    data = standardize(
        load_raw(source, args), args.validation_fraction, args.test_fraction, args.split_seed, identity.flowers102,
        args.image_column, args.label_column,
    )  # fmt: skip
    if args.holdout_classes:
        data = hold_out_classes(data, args.holdout_classes, args.split_seed)
    identity = dataclasses.replace(identity, split_sizes={name: len(split) for name, split in data.items()})
    warn_if_not_comparable(identity)
    return LoadedData(data, identity)


def load_raw(source: str, args: DataArguments) -> datasets.DatasetDict:
    """The source's splits as it gives them (its own split and column names), before :func:`standardize`."""
    # The built-in drawn sets share the --synthetic_* options: the unknown images come at the flowers' size.
    drawn = {
        "image_size": args.synthetic_image_size,
        "image_format": args.synthetic_image_format,
        "seed": args.synthetic_seed,
        "cache_dir": args.cache_dir,
    }
    if source == SYNTHETIC:
        return load_synthetic(args.synthetic_num_classes, args.synthetic_images_per_class, **drawn)
    if source == SYNTHETIC_OOD:
        return load_synthetic_ood(args.synthetic_images_per_class, **drawn)
    path = Path(source).expanduser()
    if path.is_dir():
        if is_saved_dataset(path):
            return load_saved(path)
        if is_oxford_folder(path):
            return load_oxford(path, cache_dir=args.cache_dir)
        return load_folder(path, cache_dir=args.cache_dir)
    if not is_hub_dataset_id(source):
        raise MissingFileError(f"'{source}' is not a folder of images or a data set (nothing usable is there)")
    return load_from_hub(source, revision=_revision(source, args), cache_dir=args.cache_dir)


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


def _revision(source: str, args: DataArguments) -> str | None:
    """``--dataset_revision`` for the ``--dataset`` it was given with; a pinned commit for another known source."""
    return args.dataset_revision if source == args.dataset else PINNED_REVISIONS.get(source)
