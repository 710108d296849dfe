"""Bring any source into one shape: splits train/validation/test, columns image and label (a ``ClassLabel`` with
the data set's own class names; Flowers-102's canonical names, in the Oxford order, for a Flowers-102 source)."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from flowers_hf.core.errors import DataError
from flowers_hf.data.labels import FLOWER_NAMES, canonical_flower_names

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
_LABEL_ALIASES = ("label", "labels", "fine_label", "class", "category", "target")  # fine_label: CIFAR-100


def standardize(
    data: datasets.DatasetDict,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    flowers102: bool = False,
    image_column: str | None = None,
    label_column: str | None = None,
) -> datasets.DatasetDict:
    """Return ``data`` with splits train, validation and test and the columns ``image`` and ``label``.

    Split and column names are normalised, other columns dropped, plain integer labels turned into a
    ``ClassLabel`` named by their values, and missing validation or test splits made from train by a seeded
    stratified split. Class names stay the data set's own, except for a Flowers-102 source: its names (numeric
    ids or spellings of the 102 names) become the canonical flower names, with label ids in the Oxford order.

    Args:
        data: the data set as a source gave it.
        validation_fraction: share of train held out when there is no validation split.
        test_fraction: share of train held out when there is no test split.
        seed: seed of that split.
        flowers102: whether the source is (a copy of) Oxford Flowers-102.
        image_column: the image column, where the names and types do not tell.
        label_column: the label column, likewise (CIFAR-100's ``fine_label`` or ``coarse_label``, say).
    """
    data = _rename_splits(data)
    columns = {name: _standard_columns(split, name, image_column, label_column) for name, split in data.items()}
    data = _labels_to_class_label(datasets.DatasetDict(columns))
    _check_label_range(data)
    _check_same_classes(data)
    if flowers102:
        data = _flower_names(data)
    return _fill_splits(data, validation_fraction, test_fraction, seed)


def split_name(name: str) -> str:
    """A split's standard name: ``valid``, ``val`` or ``dev`` → ``validation``, ``testing`` → ``test``, …"""
    return _SPLIT_ALIASES.get(name.lower(), name.lower())


def image_column(split: datasets.Dataset, name: str) -> str:
    """The column of ``split`` (called ``name``) that holds its images, found as :func:`standardize` finds it."""
    column = _find_column(split.features, _IMAGE_ALIASES, datasets.Image, "--image_column")
    if column is None or not isinstance(split.features[column], datasets.Image):
        raise DataError(
            f"split '{name}' has no image column; its columns are {dict(split.features)}. An image column is a "
            f"datasets.Image (named one of {_IMAGE_ALIASES} where there are several)."
        )
    return column


def _rename_splits(data: datasets.DatasetDict) -> datasets.DatasetDict:
    renamed = {split_name(name): split for name, split in data.items()}
    if "train" not in renamed:
        raise DataError(f"the data set has no train split (found {sorted(data)}); name one 'train'")
    unknown = sorted(set(renamed) - set(SPLITS))
    if unknown:
        logger.warning("Ignoring split(s) %s: only %s are used", unknown, list(SPLITS))
    return datasets.DatasetDict({name: renamed[name] for name in SPLITS if name in renamed})


def _standard_columns(
    split: datasets.Dataset, name: str, image_column: str | None, label_column: str | None
) -> datasets.Dataset:
    features = split.features
    for given, flag in ((image_column, "--image_column"), (label_column, "--label_column")):
        if given is not None and given not in features:
            raise DataError(f"split '{name}' has no column {given!r} ({flag}); its columns are {list(features)}")
    image = image_column or _find_column(features, _IMAGE_ALIASES, datasets.Image, "--image_column")
    label = label_column or _find_column(features, _LABEL_ALIASES, datasets.ClassLabel, "--label_column")
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
    plain = isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint", "string", "large_string"))
    if not (isinstance(feature, datasets.ClassLabel) or plain):
        raise DataError(
            f"split '{name}': labels (column '{label}') must be class ids, class names or a ClassLabel, not {feature}"
        )
    return split


def _find_column(features: datasets.Features, aliases: tuple[str, ...], kind: type, flag: str) -> str | None:
    """The one column of type ``kind``, else the first named like one of ``aliases``; several of the type and none
    of the names: refused, naming the flag that chooses."""
    typed = [column for column, feature in features.items() if isinstance(feature, kind)]
    if len(typed) == 1:
        return typed[0]
    named = next((column for column in features if column.lower() in aliases), None)
    if named is None and len(typed) > 1:
        raise DataError(f"the data set has several {kind.__name__} columns {typed}: choose one with {flag}")
    return named


def _labels_to_class_label(data: datasets.DatasetDict) -> datasets.DatasetDict:
    """Plain labels become a ClassLabel, the same for every split (one split may lack a class): class names as
    strings (a ``metadata.csv`` column, say) name the classes in sorted order; integer ids name them by id.

    Ids that start at 1 in every split (no 0 anywhere) are read as 1-based on purpose: classes '1' … 'K' with ids
    0 … K-1, rather than an extra class '0' without images.
    """
    plain = [name for name, split in data.items() if not isinstance(split.features["label"], datasets.ClassLabel)]
    if not plain:
        return data
    if any(data[name].features["label"].dtype.endswith("string") for name in plain):
        names = sorted({str(value) for name in plain for value in data[name].with_format(None)["label"]})
        logger.info("Labels are class names: %d classes (%s, …)", len(names), ", ".join(names[:3]))
        return _cast_labels(data, plain, datasets.ClassLabel(names=names), shift=0)
    _check_label_range(datasets.DatasetDict({name: data[name] for name in plain}))
    values = [value for name in plain for value in data[name].with_format(None)["label"]]
    first = 1 if values and min(values) == 1 else 0
    if first == 1:
        logger.warning("Integer labels start at 1 in every split: reading them as 1-based, classes '1' … '%d'",
                       max(values))  # fmt: skip
    feature = datasets.ClassLabel(names=[str(i) for i in range(first, max(values, default=0) + 1)])
    return _cast_labels(data, plain, feature, shift=first)


def _cast_labels(
    data: datasets.DatasetDict, plain: list[str], feature: datasets.ClassLabel, shift: int
) -> datasets.DatasetDict:
    converted = {}
    for name, split in data.items():
        if name in plain and shift:
            split = split.map(
                lambda labels: {"label": [i - shift for i in labels]}, input_columns="label", batched=True
            )
        converted[name] = split.cast_column("label", feature) if name in plain else split
    return datasets.DatasetDict(converted)


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


def _check_same_classes(data: datasets.DatasetDict) -> None:
    names = data["train"].features["label"].names
    for split_name, split in data.items():
        other = split.features["label"].names
        if other != names:
            raise DataError(
                f"split '{split_name}' has other classes than train: {len(other)} ({', '.join(other[:3])}, …) "
                f"against {len(names)} ({', '.join(names[:3])}, …)"
            )


def _flower_names(data: datasets.DatasetDict) -> datasets.DatasetDict:
    """A Flowers-102 source's classes under their canonical names, label ids in the Oxford order."""
    names = data["train"].features["label"].names
    flowers = canonical_flower_names(names)
    order = [name for name in FLOWER_NAMES if name in set(flowers)]
    if flowers == order and names == flowers:
        return data
    logger.info("Flowers-102 class names %s… become the canonical names in the Oxford order", ", ".join(names[:3]))
    # Renumber labels so that label id follows the official Oxford order; only the label column is
    # read and written (Dataset.align_labels_with_mapping would decode and re-encode every image).
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
