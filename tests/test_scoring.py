import math

import numpy as np
import pytest

from flowers_hf.evaluation.calibration import Calibration, expected_calibration_error, probabilities
from flowers_hf.evaluation.scoring import score_split, score_views

# Three images, three classes: the first two right (class 0, class 1), the third wrong (class 0 for label 2).
LOGITS = np.array([[4.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.5, 0.0]])
LABELS = np.array([0, 1, 2])
CALIBRATION = Calibration(temperature=2.0, unsure_threshold=0.5, ece_before=0.3, ece_after=0.1)


def test_scores_match_a_hand_computation():
    scores = score_split(LOGITS, LABELS, CALIBRATION, "test")
    assert scores["test_accuracy"] == pytest.approx(2 / 3)
    assert scores["test_top5_accuracy"] == 1.0  # three classes: all are in the top 5
    assert scores["test_mean_per_class_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    calibrated = probabilities(LOGITS, 2.0)
    assert scores["test_ece_uncalibrated"] == pytest.approx(expected_calibration_error(probabilities(LOGITS), LABELS))
    assert scores["test_ece_calibrated"] == pytest.approx(expected_calibration_error(calibrated, LABELS))
    nll = -np.mean([math.log(calibrated[i, label]) for i, label in enumerate(LABELS)])
    assert scores["test_nll_calibrated"] == pytest.approx(nll)
    # Calibrated top-1 probabilities: 0.78, 0.51, 0.39; the threshold 0.5 answers the first two, both right.
    assert calibrated.max(axis=1)[1] > 0.5 > calibrated.max(axis=1)[2]
    assert scores["test_answered"] == pytest.approx(2 / 3)
    assert scores["test_answered_accuracy"] == 1.0
    assert scores["test_temperature"] == 2.0 and scores["test_unsure_threshold"] == 0.5
    assert (scores["validation_ece_uncalibrated"], scores["validation_ece_calibrated"]) == (0.3, 0.1)


def test_the_prefix_names_the_split_and_nothing_is_answered_above_an_impossible_threshold():
    impossible = Calibration(temperature=1.0, unsure_threshold=1.01, ece_before=0.0, ece_after=0.0)
    scores = score_split(LOGITS, LABELS, impossible, "eval")
    assert all(key.startswith(("eval_", "validation_")) for key in scores)
    assert scores["eval_answered"] == 0.0 and scores["eval_answered_accuracy"] is None


def test_views_average_calibrated_probabilities():
    # (3 images, 2 views, 3 classes); the second view of the third image is right, and surer than the first.
    other = np.array([[3.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    views = np.stack([LOGITS, other], axis=1).astype(np.float32)
    scores = score_views(views, LABELS, 2.0, "test")
    mean = (probabilities(LOGITS, 2.0) + probabilities(other, 2.0)) / 2
    assert list(mean.argmax(axis=1)) == [0, 1, 2]
    assert scores["test_tta_views"] == 2
    assert scores["test_tta_accuracy"] == 1.0
    assert scores["test_tta_ece_calibrated"] == pytest.approx(expected_calibration_error(mean, LABELS), abs=1e-6)
