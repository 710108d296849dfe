"""The corruption suite: a pass of the model per corruption and severity, summarised as ``robustness.json``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from flowers_hf.data.cache import cache_images
from flowers_hf.data.transforms import eval_steps
from flowers_hf.evaluation.calibration import NUM_BINS, expected_calibration_error, probabilities
from flowers_hf.evaluation.corruptions import CORRUPTIONS, SEVERITIES, CorruptionTransform, robustness_summary
from flowers_hf.evaluation.evaluator import Evaluator

logger = logging.getLogger(__name__)

CORRUPTED_AT = "the eval resize (shorter side input_size / crop_pct), before the centre crop"


def corruption_suite(
    evaluator: Evaluator,
    split: datasets.Dataset,
    divisor: float,
    clean_accuracy: float,
    names: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    num_bins: int = NUM_BINS,
) -> dict[str, Any]:
    """Accuracy and calibrated ECE per corruption and severity, summarised as in ``robustness.json``.

    Args:
        evaluator: runs the passes.
        split: the images.
        divisor: what turns the model's logits into calibrated ones.
        clean_accuracy: accuracy on the same images uncorrupted.
        names: the corruptions (keys of ``CORRUPTIONS``); ``None``: all.
        severities: the severities, 1 to 5.
        seed: seed of the corruptions' random draws (per image, the same at every severity).
        num_bins: ECE bins.
    """
    # Every pass starts from timm's eval resize, which the corruptions and then the eval transform leave the size
    # of: decoding and resizing each image once, not once per pass, gives the same inputs in a fraction of the time.
    prep = evaluator.classifier.prep
    split = cache_images(split, eval_steps(prep).resize, "Decoding and resizing once for the suite")
    accuracy: dict[str, dict[int, float]] = {}
    ece: dict[str, dict[int, float]] = {}
    for name in names or list(CORRUPTIONS):
        accuracy[name], ece[name] = {}, {}
        for severity in sorted(severities):
            corruption = CorruptionTransform(prep, name, severity, seed)
            result = evaluator.predict(split, f"{name} {severity}", corruption=corruption)
            probs = probabilities(result.logits, divisor)
            accuracy[name][severity] = float(np.mean(probs.argmax(axis=1) == result.labels))
            ece[name][severity] = expected_calibration_error(probs, result.labels, num_bins)
        logger.info("%s: accuracy by severity %s", name, {s: round(a, 4) for s, a in accuracy[name].items()})
    return robustness_summary(clean_accuracy, accuracy, ece)
