"""Bring any source into one shape: splits train/validation/test, columns image and label (flower names)."""

from __future__ import annotations

import logging

import datasets

from ..labels import FLOWER_NAMES, numeric_names_to_flowers

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
    data = _flower_names(data)
    return _fill_splits(data, validation_fraction, test_fraction, seed)


def _rename_splits(data: datasets.DatasetDict) -> datasets.DatasetDict:
    renamed = {_SPLIT_ALIASES.get(name.lower(), name.lower()): split for name, split in data.items()}
    if "train" not in renamed:
        raise ValueError(f"the data set has no train split (found {sorted(data)}); name one 'train'")
    unknown = sorted(set(renamed) - set(SPLITS))
    if unknown:
        logger.warning("Ignoring split(s) %s: only %s are used", unknown, list(SPLITS))
    return datasets.DatasetDict({name: renamed[name] for name in SPLITS if name in renamed})


def _standard_columns(split: datasets.Dataset, name: str) -> datasets.Dataset:
    features = split.features
    image = _find_column(features, _IMAGE_ALIASES, datasets.Image)
    label = _find_column(features, _LABEL_ALIASES, datasets.ClassLabel)
    if image is None or label is None:
        raise ValueError(
            f"split '{name}' needs an image column and a label column; found {dict(features)}. "
            f"Image columns are recognised by type or by the names {_IMAGE_ALIASES}, labels by {_LABEL_ALIASES}."
        )
    split = split.select_columns([image, label])
    renames = {old: new for old, new in ((image, "image"), (label, "label")) if old != new}
    if renames:
        split = split.rename_columns(renames)
    if not isinstance(split.features["image"], datasets.Image):
        raise ValueError(f"split '{name}': column '{image}' holds {split.features['image']}, not images")
    if not isinstance(split.features["label"], datasets.ClassLabel):
        split = _labels_to_class_label(split, name)
    return split


def _find_column(features: datasets.Features, aliases: tuple[str, ...], kind: type) -> str | None:
    typed = [column for column, feature in features.items() if isinstance(feature, kind)]
    if len(typed) == 1:
        return typed[0]
    return next((column for column in features if column.lower() in aliases), None)


def _labels_to_class_label(split: datasets.Dataset, name: str) -> datasets.Dataset:
    feature = split.features["label"]
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))):
        raise ValueError(f"split '{name}': labels must be class ids or a ClassLabel, found {feature}")
    labels = split["label"]
    if min(labels) < 0:
        raise ValueError(f"split '{name}': negative label {min(labels)}")
    # Plain integer ids: name classes by their id, and let the numeric-name rule map them to flowers.
    names = [str(i) for i in range(max(labels) + 1)]
    return split.cast_column("label", datasets.ClassLabel(names=names))


def _flower_names(data: datasets.DatasetDict) -> datasets.DatasetDict:
    names = data["train"].features["label"].names
    for split_name, split in data.items():
        if split.features["label"].names != names:
            raise ValueError(f"split '{split_name}' has other class names than train")
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
