"""Likely label errors: out-of-sample class probabilities from a k-fold cross-validated classifier on the frozen
features (no fine-tuning; by default the labels of each image's nearest neighbours, or a logistic regression),
ranked by cleanlab's ``find_label_issues``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from threadpoolctl import threadpool_limits

from flowers_hf.audit.catalog import Catalog

logger = logging.getLogger(__name__)


def out_of_sample_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, classifier: str = "knn", neighbours: int = 20, seed: int = 0
) -> np.ndarray:
    """Each image's class probabilities from a classifier that never saw it: ``(images, classes)``.

    Args:
        features: one vector per image.
        labels: the given class ids.
        folds: k of the stratified k-fold (lowered to the smallest class's count when that is fewer).
        classifier: ``knn``, the distance-weighted labels of the ``neighbours`` nearest by cosine, or ``logistic``,
            a logistic regression on the standardised features.
        neighbours: for ``knn`` (lowered to what the other folds hold).
        seed: the folds' shuffle.
    """
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    k = max(2, min(folds, smallest))
    if k < folds:
        logger.warning("Cross-validating in %d folds, not %d: the smallest class has %d images", k, folds, smallest)
    model = _classifier(classifier, min(neighbours, len(labels) - -(-len(labels) // k)))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # One BLAS thread: L-BFGS multiplies small matrices, where OpenBLAS's threads wait on each other. On the 2-core
    # VM beside other jobs (2026-12-05, BENCHMARKS.md) a fold's fit took over 150 s with its default threads.
    with threadpool_limits(limits=1, user_api="blas"):
        return cross_val_predict(model, features, labels, cv=cv, method="predict_proba")


def _classifier(name: str, neighbours: int) -> Pipeline:
    if name == "knn":  # unit vectors: Euclidean order is cosine order
        return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=max(neighbours, 1), weights="distance"))
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def label_issues(
    cat: Catalog, features: np.ndarray, folds: int, classifier: str = "knn", neighbours: int = 20
) -> list[dict[str, Any]]:
    """Suspected mislabels of every split, most suspect first: ``{"split", "index", "file", "given", "suggested",
    "label_quality", "suggested_probability"}`` (``out_of_sample_probabilities`` for the arguments)."""
    probabilities = out_of_sample_probabilities(features, cat.label, folds, classifier, neighbours)
    ranked = find_label_issues(cat.label, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(cat.label, probabilities)
    names = cat.class_names
    return [
        {
            **cat.item(int(row)),
            "given": names[cat.label[row]],
            "suggested": names[int(probabilities[row].argmax())],
            "label_quality": round(float(quality[row]), 5),
            "suggested_probability": round(float(probabilities[row].max()), 5),
        }
        for row in ranked
    ]
