"""The trained model's last pass: validation and test predictions, calibration folded into the head, the scores.

Temperature scaling and the "unsure" threshold are fitted on validation and folded into the model's head: the saved
model's probabilities come out calibrated; the argmax, hence every score, is unchanged. Both splits are scored as
``python -m flowers_hf.evaluate`` scores them (``flowers_hf.evaluation.scoring.score_split``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from transformers import TimmWrapperForImageClassification, Trainer

from flowers_hf.data.holdout import HELD_OUT
from flowers_hf.evaluation.calibration import Calibration, calibrate_model
from flowers_hf.evaluation.scoring import score_split
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.frozen_features import FrozenFeatures, predict_split


@dataclass
class FinalScores:
    """What the last pass measured.

    Attributes:
        trainer: the Trainer that ran it (``train.py`` ends the run through it).
        metrics: ``{"eval": …, "test": …}``.
        validation: validation ``(logits, labels)``, uncalibrated, as calibration was fitted on them.
        test: test ``(logits, labels)``.
        calibration: the temperature and unsure threshold.
        held_out: with ``--holdout_classes``, the uncalibrated logits of the held-out classes' test images.
    """

    trainer: Trainer
    metrics: dict[str, dict[str, float]]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    calibration: Calibration
    held_out: np.ndarray | None


def score_trained_model(
    model: TimmWrapperForImageClassification,
    splits: dict,
    args: FlowersTrainingArguments,
    make_trainer: Callable[..., Trainer],
    features: FrozenFeatures | None,
) -> FinalScores:
    """Predict validation and test (and the held-out classes' images), calibrate ``model`` on validation, score both
    splits, and log and save the scores (``eval_results.json``, ``test_results.json``).

    Args:
        model: the trained model, its best weights loaded.
        splits: the splits with their transforms attached.
        args: the run's training arguments.
        make_trainer: builds a Trainer of the model.
        features: the frozen backbone's features when the best stage trained the classifier alone, else ``None``.
    """
    # On precomputed features, the passes read rows of a tensor: no decoding left for workers to do.
    trainer = make_trainer(dataclasses.replace(args, dataloader_num_workers=0) if features else args)
    validation = predict_split(trainer, splits, "validation", "eval", features=features)
    test = predict_split(trainer, splits, "test", "test", features=features)
    # --holdout_classes: the held-out classes' test images, scored in the run folder as `evaluate --ood` scores a set.
    held_out = predict_split(trainer, splits, HELD_OUT, HELD_OUT, features).predictions if HELD_OUT in splits else None
    calibration = calibrate_model(model, validation.predictions, validation.label_ids)
    metrics = {}
    for split, output in (("eval", validation), ("test", test)):
        metrics[split] = output.metrics | score_split(output.predictions, output.label_ids, calibration, split)
        trainer.log_metrics(split, {key: value for key, value in metrics[split].items() if value is not None})
        trainer.save_metrics(split, metrics[split])
    return FinalScores(
        trainer,
        metrics,
        (validation.predictions, validation.label_ids),
        (test.predictions, test.label_ids),
        calibration,
        held_out,
    )
