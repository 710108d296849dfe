"""What the model gets wrong, for a person to look at: its most confident mistakes, accuracy per class, and the
pairs of classes it confuses most."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from flowers_hf.evaluation.calibration import probabilities


@dataclass(frozen=True)
class Mistake:
    """One wrong prediction: the row in the split, the true and the predicted class, and its probability."""

    index: int
    label: int
    predicted: int
    probability: float


def top_mistakes(logits: np.ndarray, labels: np.ndarray, k: int = 16, temperature: float = 1.0) -> list[Mistake]:
    """The ``k`` wrong predictions with the highest top-1 probability, most confident first (ties: lower row first).

    Args:
        logits: class scores, shape (n, classes).
        labels: true class ids, shape (n,).
        k: at most this many.
        temperature: ``softmax(logits / temperature)`` are the probabilities reported (the model's calibration).
    """
    probs = probabilities(logits, temperature)
    predicted, labels = probs.argmax(axis=1), np.asarray(labels)
    confidence = probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return [Mistake(int(i), int(labels[i]), int(predicted[i]), float(confidence[i])) for i in ranked]


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class's images predicted right (its recall), NaN for a class with no image.

    Args:
        labels: true class ids.
        predictions: predicted class ids, same length.
        num_classes: the number of classes.
    """
    counts = confusion_matrix(labels, predictions, labels=np.arange(num_classes))
    support = counts.sum(axis=1)
    return np.divide(np.diag(counts), support, out=np.full(num_classes, np.nan), where=support > 0)


def worst_first(accuracy: np.ndarray) -> np.ndarray:
    """Class ids by accuracy, worst first (ties: lower id first), leaving out classes without images (NaN).

    Args:
        accuracy: per class id, from :func:`per_class_accuracy`.
    """
    present = np.flatnonzero(~np.isnan(accuracy))
    return present[np.argsort(accuracy[present], kind="stable")]


def confused_pairs(
    labels: np.ndarray, predictions: np.ndarray, class_names: list[str], top: int = 20
) -> list[dict[str, Any]]:
    """The (true, predicted) pairs of different classes with the most images, most first (ties: by class ids).

    Each pair is ``{"true", "predicted", "true_id", "predicted_id", "count", "share_of_true"}``; ``share_of_true``
    is the count over the true class's images. Pairs that never occur are left out.

    Args:
        labels: true class ids.
        predictions: predicted class ids, same length.
        class_names: names in class id order.
        top: at most this many pairs.
    """
    counts = confusion_matrix(labels, predictions, labels=np.arange(len(class_names)))
    np.fill_diagonal(counts, 0)
    support = np.bincount(np.asarray(labels), minlength=len(class_names))
    rows, columns = np.nonzero(counts)
    order = np.lexsort((columns, rows, -counts[rows, columns]))[:top]
    return [
        {
            "true": class_names[row],
            "predicted": class_names[column],
            "true_id": int(row),
            "predicted_id": int(column),
            "count": int(counts[row, column]),
            "share_of_true": round(float(counts[row, column] / support[row]), 4),
        }
        for row, column in zip(rows[order], columns[order], strict=True)
    ]
