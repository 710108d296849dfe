"""One way to score a split: the classification scores, calibration before and after temperature scaling, and what
the unsure rule does, from the model's uncalibrated logits. ``train.py`` (validation and test) and
``python -m flowers_hf.evaluate`` both write these keys, so a ``test_results.json`` means the same from either."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flowers_hf.data.tta import average_probabilities
from flowers_hf.evaluation.calibration import (
    NUM_BINS,
    Calibration,
    expected_calibration_error,
    negative_log_likelihood,
    probabilities,
)
from flowers_hf.evaluation.metrics import ClassificationMetrics


def classification_scores(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    """``<prefix>_accuracy``, ``_top5_accuracy``, ``_macro_f1`` and ``_mean_per_class_accuracy`` of class scores
    (logits or probabilities: only their order counts)."""
    values = ClassificationMetrics(keep_in_memory=True).compute(predictions=scores, references=labels)
    return {f"{prefix}_{key}": value for key, value in values.items()}


def score_split(
    logits: np.ndarray, labels: np.ndarray, calibration: Calibration, prefix: str, num_bins: int = NUM_BINS
) -> dict[str, Any]:
    """The scores of a split, its ECE and NLL before and after calibration, and the unsure rule's effect.

    Args:
        logits: the model's uncalibrated class scores, shape (n, classes).
        labels: true class ids, shape (n,).
        calibration: the temperature and unsure threshold (fitted on validation).
        prefix: the metric prefix (``test``, ``eval``, ``train``).
        num_bins: ECE bins.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    calibrated = probabilities(logits, calibration.temperature)
    threshold = calibration.unsure_threshold
    answered = calibrated.max(axis=1) >= (threshold if threshold is not None else 0.0)
    correct = calibrated.argmax(axis=1) == labels
    return classification_scores(logits, labels, prefix) | {
        f"{prefix}_ece_uncalibrated": expected_calibration_error(probabilities(logits), labels, num_bins),
        f"{prefix}_ece_calibrated": expected_calibration_error(calibrated, labels, num_bins),
        f"{prefix}_nll_uncalibrated": negative_log_likelihood(logits, labels),
        f"{prefix}_nll_calibrated": negative_log_likelihood(logits, labels, calibration.temperature),
        f"{prefix}_temperature": calibration.temperature,
        # Where the temperature was fitted (validation), as recorded with it.
        "validation_ece_uncalibrated": calibration.ece_before,
        "validation_ece_calibrated": calibration.ece_after,
        f"{prefix}_unsure_threshold": threshold,
        f"{prefix}_answered": float(answered.mean()),
        f"{prefix}_answered_accuracy": float(correct[answered].mean()) if answered.any() else None,
    }


def score_views(logits: np.ndarray, labels: np.ndarray, divisor: float, prefix: str, num_bins: int = NUM_BINS):
    """Scores of test-time augmentation: the views' mean calibrated probabilities, their ECE, the number of views.

    Args:
        logits: class scores of every view, shape (n, views, classes).
        labels: true class ids, shape (n,).
        divisor: what turns the model's logits into calibrated ones.
        prefix: the metric prefix.
        num_bins: ECE bins.
    """
    probabilities = average_probabilities(torch.from_numpy(logits), divisor).double().numpy()
    return classification_scores(probabilities, labels, f"{prefix}_tta") | {
        f"{prefix}_tta_ece_calibrated": expected_calibration_error(probabilities, labels, num_bins),
        f"{prefix}_tta_views": int(logits.shape[1]),
    }
