"""An open-set protocol without an outside data set: hold some classes out of training and take their test images for
images of none of the known classes (``--holdout_classes N``).

The held-out classes are a draw seeded by ``--split_seed``, so the same options hold out the same classes (the log,
``ood.json`` and the model card name them). The kept classes are renumbered ``0 … K-N-1`` in their old order, so the
model's ``id2label`` names only them; every split loses the held-out classes, and their test images become the split
:data:`HELD_OUT`, with the columns ``image`` and ``class`` (the name).
"""

from __future__ import annotations

import logging

import datasets
import numpy as np

from flowers_hf.core.errors import ArgumentError

logger = logging.getLogger(__name__)

HELD_OUT = "held_out"


def held_out_class_ids(num_classes: int, count: int, seed: int) -> list[int]:
    """``count`` class ids drawn without replacement by a generator seeded with ``seed``, sorted.

    Args:
        num_classes: the data set's number of classes.
        count: how many to hold out; at least 2 classes must stay.
        seed: the draw's seed.
    """
    if not 0 < count <= num_classes - 2:
        raise ArgumentError(f"--holdout_classes must lie between 1 and {num_classes - 2} for {num_classes} classes")
    return sorted(int(i) for i in np.random.default_rng([seed, 4]).choice(num_classes, count, replace=False))


def hold_out_classes(data: datasets.DatasetDict, count: int, seed: int) -> datasets.DatasetDict:
    """``data`` without ``count`` of its classes, renumbered, plus the split :data:`HELD_OUT`: the test images of the
    classes left out.

    Args:
        data: splits train, validation and test with ``image`` and ``label`` (a ``ClassLabel``).
        count: how many classes to hold out.
        seed: the seed of their draw.
    """
    names = data["train"].features["label"].names
    held = set(held_out_class_ids(len(names), count, seed))
    new_ids = {old: new for new, old in enumerate(i for i in range(len(names)) if i not in held)}
    features = data["train"].features.copy()
    features["label"] = datasets.ClassLabel(names=[names[i] for i in new_ids])
    logger.info("Holding out %d of %d classes (seed %d), their test images the unknown set: %s", count, len(names),
                seed, ", ".join(names[i] for i in sorted(held)))  # fmt: skip
    kept = {name: _known_only(split, new_ids, features) for name, split in data.items()}
    unknown = data["test"].filter(lambda labels: [label in held for label in labels], input_columns="label",
                                  batched=True, desc="The held-out classes' test images")  # fmt: skip
    # Their class by name only: a label id beyond the model's classes would break anything that computes a loss.
    unknown = unknown.map(lambda labels: {"class": [names[label] for label in labels]}, input_columns="label",
                          batched=True, remove_columns=["label"])  # fmt: skip
    return datasets.DatasetDict({**kept, HELD_OUT: unknown})


def held_out_names(data: datasets.DatasetDict) -> list[str]:
    """The names of the classes :func:`hold_out_classes` left out of ``data`` (none without :data:`HELD_OUT`)."""
    return sorted(set(data[HELD_OUT]["class"])) if HELD_OUT in data else []


def _known_only(split: datasets.Dataset, new_ids: dict[int, int], features: datasets.Features) -> datasets.Dataset:
    split = split.filter(lambda labels: [label in new_ids for label in labels], input_columns="label", batched=True)
    # Only the label column is read; the kept classes' ids close up in their old order.
    return split.map(lambda labels: {"label": [new_ids[label] for label in labels]}, input_columns="label",
                     batched=True, features=features, desc="Renumbering the kept classes")  # fmt: skip
