"""The one rule for evaluating on part of a split (``--max_eval_samples``): a seeded sample, stratified by class
where every class can be represented, so that a class-sorted split does not shrink to its first classes."""

from __future__ import annotations

import datasets
import numpy as np
from sklearn.model_selection import train_test_split


def sample_split(split: datasets.Dataset, count: int | None, seed: int = 0) -> datasets.Dataset:
    """``count`` images of ``split`` (all of them for ``None`` or ``count >= len(split)``), in their original order.

    Stratified by ``label`` (scikit-learn's ``train_test_split``) when the sample can hold every class at least
    once (and the rest too) and every class has two images; a seeded uniform sample otherwise.

    Args:
        split: a split with a ``label`` column (or none: then uniform).
        count: how many images to keep.
        seed: the sample's seed.
    """
    if count is None or count >= len(split):
        return split
    labels = np.asarray(split.with_format(None)["label"]) if "label" in split.column_names else np.zeros(0)
    classes = np.unique(labels, return_counts=True)[1]
    # scikit-learn needs every class twice and both parts at least one image of each class.
    if len(labels) and classes.min() >= 2 and min(count, len(split) - count) >= len(classes):
        chosen, _ = train_test_split(np.arange(len(split)), train_size=count, stratify=labels, random_state=seed)
    else:
        chosen = np.random.default_rng(seed).choice(len(split), count, replace=False)
    return split.select(np.sort(chosen), keep_in_memory=True)
