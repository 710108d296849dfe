"""How well a model tells its own classes from images of none of them ("out of distribution"), for each score of
``flowers_hf.serving.open_set``: AUROC, the false-positive rate at 95 % true-positive rate, and the share of the unknown
images that a threshold chosen on validation accepts; the rule to recommend, which ``config.json`` stores.

In-distribution images are the positives (scores are higher for known classes). Thresholds are chosen on
validation alone, as the calibration's unsure threshold is (keep 95 % of the correctly classified images), so that
the unknown set only measures them. ``ood.json`` holds what :func:`open_set_report` returns.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from transformers import TimmWrapperForImageClassification

from flowers_hf.evaluation.calibration import Calibration, keeping_threshold
from flowers_hf.evaluation.few_images import interval_if_few
from flowers_hf.serving.open_set import CONFIG_KEY, SCORE_NAMES, SCORES, OpenSetRule, known_score, msp

logger = logging.getLogger(__name__)

TPR = 0.95


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of telling ``known`` scores (positives) from ``unknown`` ones: the probability that a
    random known image scores higher than a random unknown one (ties count half)."""
    labels, scores = _scored(known, unknown)
    return float(roc_auc_score(labels, scores))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = TPR) -> float:
    """The share of ``unknown`` scores accepted by the highest threshold that accepts ``tpr`` of the ``known``
    ones (FPR at 95 % TPR for the default)."""
    labels, scores = _scored(known, unknown)
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fprs[np.argmax(tprs >= tpr - 1e-12)])


def _scored(known: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    if known.size == 0 or unknown.size == 0:
        raise ValueError(f"need known and unknown scores, got {known.size} and {unknown.size}")
    return np.r_[np.ones(known.size), np.zeros(unknown.size)], np.r_[known, unknown]


def open_set_report(
    known: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    unknown: np.ndarray,
    calibration: Calibration,
    ood_source: str,
    known_split: str = "test",
) -> dict[str, Any]:
    """Every score's AUROC, FPR at 95 % TPR, validation threshold and the shares it accepts; the unsure threshold's
    share of the unknown images; the recommended rule (the lowest FPR at 95 % TPR).

    Args:
        known: uncalibrated ``(logits, labels)`` of the in-distribution split (test).
        validation: uncalibrated ``(logits, labels)`` of validation, where the thresholds are chosen.
        unknown: uncalibrated logits of the images of none of the classes.
        calibration: the temperature (the scores read ``logits / T``, as the saved model gives them) and the unsure
            threshold.
        ood_source: what the unknown images are, for the record.
        known_split: the in-distribution split's name.
    """
    temperature, keep = calibration.temperature, calibration.keep_correct
    validation_logits = np.asarray(validation[0]) / temperature
    correct = validation_logits.argmax(axis=1) == np.asarray(validation[1])
    scores = {}
    for name, (inside, outside) in score_pairs(known[0], unknown, temperature).items():
        kept = known_score(validation_logits, name)[correct]
        threshold = keeping_threshold(kept, keep)
        scores[name] = {
            "auroc": auroc(inside, outside),
            "fpr_at_95_tpr": fpr_at_tpr(inside, outside),
            "threshold": threshold,
            "known_accepted": _share(inside, threshold),
            "ood_accepted": _share(outside, threshold),
            "threshold_interval": _threshold_interval(name, kept, threshold, keep),
        }
    recommended = recommend(scores, ood_source)
    return {
        "ood_source": ood_source,
        "known_split": known_split,
        "num_known": len(known[0]),
        "num_ood": len(unknown),
        "temperature": temperature,
        "thresholds_chosen_on": "validation",
        "keep_correct": keep,
        "thresholds_rest_on": int(correct.sum()),  # the correctly classified validation images
        "unsure_threshold": calibration.unsure_threshold,
        "unsure_threshold_accepts": _share(msp(np.asarray(unknown) / temperature), calibration.unsure_threshold),
        "scores": scores,
        "recommended": recommended.to_dict() if recommended is not None else None,
    }


def _threshold_interval(name: str, kept: np.ndarray, threshold: float | None, keep: float) -> list[float] | None:
    """Where the threshold rests on few correctly classified validation images: its bootstrap interval, with a
    warning (``flowers_hf.evaluation.few_images``); ``None`` otherwise."""

    def refit(rows: np.ndarray) -> np.ndarray:
        return np.array([keeping_threshold(kept[resample], keep) for resample in rows])

    images = "correctly classified validation images"
    return interval_if_few(f"the {SCORE_NAMES[name]} threshold", threshold, len(kept), refit, images)


def score_pairs(known: np.ndarray, unknown: np.ndarray, temperature: float) -> dict[str, tuple[np.ndarray, ...]]:
    """Each score of the known and of the unknown images, ``{name: (known scores, unknown scores)}``.

    Args:
        known: uncalibrated logits of the in-distribution images.
        unknown: uncalibrated logits of the images of none of the classes.
        temperature: the calibration's; the scores read ``logits / temperature``.
    """
    known, unknown = np.asarray(known) / temperature, np.asarray(unknown) / temperature
    return {name: (known_score(known, name), known_score(unknown, name)) for name in SCORES}


def _share(scores: np.ndarray, threshold: float | None) -> float | None:
    return None if threshold is None else float(np.mean(scores >= threshold))


def recommend(scores: dict[str, dict[str, Any]], ood_source: str) -> OpenSetRule | None:
    """The score with the lowest FPR at 95 % TPR (the first of :data:`SCORES` on a tie), at its validation threshold;
    ``None`` when validation had no correct prediction to choose a threshold from."""
    usable = [name for name in SCORES if scores[name]["threshold"] is not None]
    if not usable:
        return None
    best = min(usable, key=lambda name: scores[name]["fpr_at_95_tpr"])
    chosen = scores[best]
    return OpenSetRule(best, chosen["threshold"], chosen["fpr_at_95_tpr"], ood_source, chosen["ood_accepted"])


def store_rule(model: TimmWrapperForImageClassification, report: dict[str, Any]) -> OpenSetRule | None:
    """Record the report's recommended rule in ``model.config`` (``save_model`` writes it into ``config.json``).

    Only for a model whose head holds the calibration's temperature: the thresholds read temperature-scaled logits,
    which the saved model then outputs itself. Returns the rule stored, or ``None``.
    """
    rule = report["recommended"]
    if rule is None or Calibration.from_config(model.config) is None:
        logger.warning("No open-set rule stored: %s", "no threshold" if rule is None else "the model is uncalibrated")
        return None
    setattr(model.config, CONFIG_KEY, rule)
    logger.info("Open-set rule: %s below %.4f (FPR at 95%% TPR %.1f%% on %s)", rule["score"], rule["threshold"],
                100 * rule["fpr_at_95_tpr"], rule["ood_source"])  # fmt: skip
    return OpenSetRule(**rule)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report for the terminal: a line per score, then the unsure threshold's share and the recommendation."""
    lines = [
        f"  unknown images      {report['num_ood']:,} of {report['ood_source']}, against {report['num_known']:,} "
        f"{report['known_split']} images"
    ]
    for name, entry in report["scores"].items():
        accepted = "—" if entry["ood_accepted"] is None else f"{entry['ood_accepted']:.1%}"
        lines.append(
            f"    {SCORE_NAMES[name]:28s} AUROC {entry['auroc']:.4f}, FPR at 95% TPR {entry['fpr_at_95_tpr']:6.1%}, "
            f"accepted at its validation threshold {accepted}"
        )
    if report["unsure_threshold_accepts"] is not None:
        lines.append(f"    the unsure threshold ({report['unsure_threshold']:.4f}) accepts "
                     f"{report['unsure_threshold_accepts']:.1%} of them")  # fmt: skip
    rule = report["recommended"]
    if rule is not None:
        lines.append(f"    recommended: {SCORE_NAMES[rule['score']]} below {rule['threshold']:.4f} is unknown")
    return lines
