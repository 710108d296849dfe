"""Bring any source into one shape: splits train/validation/test, columns image and label (flower names)."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from flowers_hf.data.labels import FLOWER_NAMES, numeric_names_to_flowers
from flowers_hf.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "training": "train",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "testing": "test",
}
_IMAGE_ALIASES = ("image", "img", "jpg", "png", "pixel_values")
_LABEL_ALIASES = ("label", "labels", "class", "category", "target")


def standardize(
    data: datasets.DatasetDict,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
) -> datasets.DatasetDict:
    """Return ``data`` with splits train, validation and test and the columns ``image`` and ``label``.

    Split and column names are normalised, other columns dropped, numeric class names ('1'…'102')
    replaced by flower names with label ids put in the Oxford order, and missing validation or test
    splits made from train by a seeded stratified split.

    Args:
        data: the data set as a source gave it.
        validation_fraction: share of train held out when there is no validation split.
        test_fraction: share of train held out when there is no test split.
        seed: seed of that split.
    """
    data = _rename_splits(data)
    data = datasets.DatasetDict({name: _standard_columns(split, name) for name, split in data.items()})
    data = _labels_to_class_label(data)
    _check_label_range(data)
    data = _flower_names(data)
    return _fill_splits(data, validation_fraction, test_fraction, seed)


def _rename_splits(data: datasets.DatasetDict) -> datasets.DatasetDict:
    renamed = {_SPLIT_ALIASES.get(name.lower(), name.lower()): split for name, split in data.items()}
    if "train" not in renamed:
        raise DataError(f"the data set has no train split (found {sorted(data)}); name one 'train'")
    unknown = sorted(set(renamed) - set(SPLITS))
    if unknown:
        logger.warning("Ignoring split(s) %s: only %s are used", unknown, list(SPLITS))
    return datasets.DatasetDict({name: renamed[name] for name in SPLITS if name in renamed})


def _standard_columns(split: datasets.Dataset, name: str) -> datasets.Dataset:
    features = split.features
    image = _find_column(features, _IMAGE_ALIASES, datasets.Image)
    label = _find_column(features, _LABEL_ALIASES, datasets.ClassLabel)
    if image is None or label is None:
        missing = " and ".join(kind for kind, column in (("an image", image), ("a label", label)) if column is None)
        raise DataError(
            f"split '{name}' has no {missing} column; its columns are {dict(features)}. An image column is a "
            f"datasets.Image or is named one of {_IMAGE_ALIASES}; a label column is a ClassLabel or is named one of "
            f"{_LABEL_ALIASES}. Rename the column (Dataset.rename_column) or cast it."
        )
    split = split.select_columns([image, label])
    renames = {old: new for old, new in ((image, "image"), (label, "label")) if old != new}
    if renames:
        split = split.rename_columns(renames)
    if not isinstance(split.features["image"], datasets.Image):
        raise DataError(f"split '{name}': column '{image}' holds {split.features['image']}, not images")
    feature = split.features["label"]
    integers = isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))
    if not (isinstance(feature, datasets.ClassLabel) or integers):
        raise DataError(f"split '{name}': labels (column '{label}') must be class ids or a ClassLabel, not {feature}")
    return split


def _find_column(features: datasets.Features, aliases: tuple[str, ...], kind: type) -> str | None:
    typed = [column for column, feature in features.items() if isinstance(feature, kind)]
    if len(typed) == 1:
        return typed[0]
    return next((column for column in features if column.lower() in aliases), None)


def _labels_to_class_label(data: datasets.DatasetDict) -> datasets.DatasetDict:
    """Plain integer ids become a ClassLabel named by id, the same for every split (one split may lack a class)."""
    plain = [name for name, split in data.items() if not isinstance(split.features["label"], datasets.ClassLabel)]
    if not plain:
        return data
    _check_label_range(datasets.DatasetDict({name: data[name] for name in plain}))
    # Name classes by their id, and let the numeric-name rule map them to flowers.
    names = [str(i) for i in range(max(max(data[name]["label"], default=0) for name in plain) + 1)]
    feature = datasets.ClassLabel(names=names)
    return datasets.DatasetDict(
        {name: split.cast_column("label", feature) if name in plain else split for name, split in data.items()}
    )


def _check_label_range(data: datasets.DatasetDict) -> None:
    """Refuse labels outside 0 … num_classes - 1 (-1 marks unlabelled rows in some Hub copies), naming the rows."""
    for name, split in data.items():
        feature = split.features["label"]
        limit = feature.num_classes if isinstance(feature, datasets.ClassLabel) else None
        labels = np.fromiter(split.with_format(None)["label"], dtype=np.int64, count=len(split))
        outside = labels < 0
        if limit is not None:
            outside |= labels >= limit
        rows = outside.nonzero()[0]
        if len(rows):
            allowed = f"0 … {limit - 1}" if limit is not None else "0 or more"
            raise DataError(
                f"split '{name}': {len(rows)} label(s) outside the class ids {allowed}, for example row {rows[0]} "
                f"with label {labels[rows[0]]}; fix or drop those rows before training"
            )


def _flower_names(data: datasets.DatasetDict) -> datasets.DatasetDict:
    names = data["train"].features["label"].names
    for split_name, split in data.items():
        other = split.features["label"].names
        if other != names:
            raise DataError(
                f"split '{split_name}' has other classes than train: {len(other)} ({', '.join(other[:3])}, …) "
                f"against {len(names)} ({', '.join(names[:3])}, …)"
            )
    flowers = numeric_names_to_flowers(names)
    if flowers is None:
        return data
    logger.info(
        "Class names are Oxford ids (%s, …); using the flower names in the official order", ", ".join(names[:3])
    )
    # Renumber labels so that label id follows the official Oxford order; only the label column is
    # read and written (Dataset.align_labels_with_mapping would decode and re-encode every image).
    order = [name for name in FLOWER_NAMES if name in set(flowers)]
    new_ids = [order.index(name) for name in flowers]
    features = data["train"].features.copy()
    features["label"] = datasets.ClassLabel(names=order)
    return data.map(
        lambda labels: {"label": [new_ids[i] for i in labels]},
        input_columns="label",
        batched=True,
        features=features,
        desc="Ordering labels like Oxford",
    )


def _fill_splits(
    data: datasets.DatasetDict, validation_fraction: float, test_fraction: float, seed: int
) -> datasets.DatasetDict:
    splits = dict(data)
    for missing, fraction in (("test", test_fraction), ("validation", validation_fraction)):
        if missing in splits:
            continue
        # The fraction is of the original train split, whatever was taken from it before.
        share = fraction * len(data["train"]) / len(splits["train"])
        splits["train"], splits[missing] = _stratified_split(splits["train"], share, seed)
        logger.warning(
            "The source has no %s split: made one from train by a stratified split (%.0f%%, seed %d): %d train, %d %s",
            missing, 100 * fraction, seed, len(splits["train"]), len(splits[missing]), missing,
        )  # fmt: skip
    return datasets.DatasetDict({name: splits[name] for name in SPLITS})


def _stratified_split(split: datasets.Dataset, share: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    try:
        parts = split.train_test_split(test_size=share, stratify_by_column="label", seed=seed)
    except ValueError as error:  # a class with a single image, or fewer held-out images than classes
        logger.warning("Stratified split impossible (%s); splitting at random instead", error)
        parts = split.train_test_split(test_size=share, seed=seed)
    return parts["train"], parts["test"]
