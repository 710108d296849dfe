"""Metrics: hand-checked values, the offline evaluate module, the per-class report."""

import numpy as np
import pytest
from transformers import EvalPrediction

from flowers_hf.evaluation.metrics import ClassificationMetrics, build_compute_metrics, classification_report

# 6 examples, 3 classes. Top-1 predictions: 0, 1, 1, 2, 0, 2; labels: 0, 1, 2, 2, 1, 2.
SCORES = np.array(
    [[3, 1, 0], [0, 2, 1], [0, 3, 2], [1, 0, 2], [2, 1, 0], [0, 1, 5]],
    dtype=np.float32,
)
LABELS = np.array([0, 1, 2, 2, 1, 2])


def test_metrics_by_hand():
    metrics = build_compute_metrics(top_k=2)(EvalPrediction(predictions=SCORES, label_ids=LABELS))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # Top-2: example 4 (label 1) has scores 2, 1, 0 -> class 1 is second: counted.
    assert metrics["top2_accuracy"] == pytest.approx(6 / 6)
    # Per-class recall: class 0 1/1, class 1 1/2, class 2 2/3.
    assert metrics["mean_per_class_accuracy"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    # Per-class F1: class 0 p=1/2 r=1 -> 2/3; class 1 p=1/2 r=1/2 -> 1/2; class 2 p=1 r=2/3 -> 4/5.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)


def test_default_keys_and_tuple_predictions():
    metrics = build_compute_metrics()(EvalPrediction(predictions=(SCORES,), label_ids=LABELS))
    assert set(metrics) == {"accuracy", "top5_accuracy", "macro_f1", "mean_per_class_accuracy"}
    assert metrics["top5_accuracy"] == 1.0  # k is capped at the number of classes


def test_metric_module_is_an_evaluate_module_that_needs_no_hub():
    metric = ClassificationMetrics(keep_in_memory=True)
    metric.add_batch(predictions=SCORES[:3], references=LABELS[:3])
    metric.add_batch(predictions=SCORES[3:], references=LABELS[3:])
    assert metric.compute()["accuracy"] == pytest.approx(4 / 6)


def test_classification_report_by_flower_name():
    report = classification_report(SCORES, LABELS, ["rose", "tulip", "daisy"])
    assert report["rose"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1-score": 2 / 3, "support": 1})
    assert report["daisy"]["support"] == 3
    assert report["accuracy"] == pytest.approx(4 / 6)


def test_mean_per_class_accuracy_is_balanced_accuracy_when_a_class_is_missing_from_the_labels():
    from sklearn.metrics import balanced_accuracy_score

    scores = np.eye(4, dtype=np.float32)[[0, 1, 3, 3, 0]]  # predicts class 3, which no label has
    labels = np.array([0, 1, 2, 2, 1])
    metrics = build_compute_metrics()(EvalPrediction(predictions=scores, label_ids=labels))
    with pytest.warns(UserWarning):
        expected = balanced_accuracy_score(labels, scores.argmax(axis=1))
    assert metrics["mean_per_class_accuracy"] == pytest.approx(expected)
