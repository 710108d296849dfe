"""Classification metrics as an ``evaluate`` module that works offline, and the per-class report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score, top_k_accuracy_score
from sklearn.metrics import classification_report as sklearn_report
from transformers import EvalPrediction

_DESCRIPTION = """Accuracy, top-k accuracy, macro F1 and mean per-class accuracy (balanced accuracy) from class
scores. The Hub's metric modules are fetched from the Hub by `evaluate.load`; this one is part of the package."""


class ClassificationMetrics(evaluate.Metric):
    """``compute(predictions=scores (n, n_classes), references=labels (n,), top_k=5)``."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
            module_name="flowers_hf_classification",
        )

    def _compute(self, predictions: list, references: list, top_k: int = 5) -> dict[str, float]:
        predictions, references = np.asarray(predictions, dtype=np.float32), np.asarray(references)
        num_classes = predictions.shape[1]
        labels = np.arange(num_classes)
        predicted = predictions.argmax(axis=1)
        return {
            "accuracy": float(accuracy_score(references, predicted)),
            f"top{top_k}_accuracy": _top_k_accuracy(predictions, references, top_k),
            "macro_f1": float(f1_score(references, predicted, labels=labels, average="macro", zero_division=0)),
            # The mean of per-class recalls over the classes present in the references (balanced accuracy).
            "mean_per_class_accuracy": float(
                recall_score(references, predicted, labels=np.unique(references), average="macro", zero_division=0)
            ),
        }


def _top_k_accuracy(scores: np.ndarray, references: np.ndarray, k: int) -> float:
    if k >= scores.shape[1]:
        return 1.0  # every class is among the top k
    return float(top_k_accuracy_score(references, scores, k=k, labels=np.arange(scores.shape[1])))


def build_compute_metrics(top_k: int = 5) -> Callable[[EvalPrediction], dict[str, float]]:
    """A Trainer ``compute_metrics``: logits and labels in, ``accuracy``, ``top5_accuracy``, ``macro_f1`` and
    ``mean_per_class_accuracy`` out.

    Args:
        top_k: the k of top-k accuracy.
    """
    # In memory: every DDP process computes on the gathered predictions, and cache files would collide.
    metric = ClassificationMetrics(keep_in_memory=True)

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(predictions=logits, references=prediction.label_ids, top_k=top_k)

    return compute_metrics


def classification_report(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class (by name), with macro and weighted averages.

    Args:
        logits: class scores, shape (n, n_classes).
        labels: true class ids, shape (n,).
        class_names: names in class id order.
    """
    return sklearn_report(
        labels,
        logits.argmax(axis=1),
        labels=np.arange(len(class_names)),
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
