"""Calibrated confidence: expected calibration error, temperature scaling folded into the classifier head, and the
"unsure" threshold, all fitted on validation and stored with the model.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides the logits by one
scalar ``T`` fitted to minimise the negative log-likelihood on held-out data; the argmax, hence accuracy, does not
change. Dividing the classifier's weight and bias by ``T`` gives the same logits, so the saved model's
probabilities are calibrated for every loader (``pipeline``, ``AutoModelForImageClassification``, timm) without
code of ours. A temperature that would raise the ECE on the split it was fitted on is not applied (T = 1): the NLL
it minimises and the ECE reported can disagree. ``config.json`` records what was done under ``"calibration"``:
transformers keeps the extra key and timm ignores it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import softmax
from transformers import PretrainedConfig, TimmWrapperForImageClassification

from flowers_hf.evaluation.few_images import interval_if_few

logger = logging.getLogger(__name__)

CONFIG_KEY = "calibration"
NUM_BINS = 15
# The unsure threshold turns away at most this share of the validation images the model classified correctly.
KEEP_CORRECT = 0.95
_TEMPERATURE_RANGE = (1e-2, 1e2)


@dataclass(frozen=True)
class Calibration:
    """What calibration did to a model, as stored in ``config.json``.

    Args:
        temperature: divide the uncalibrated logits by it to get calibrated ones; cumulative when a calibrated
            model was calibrated again.
        unsure_threshold: calibrated top-1 probabilities below it mean "unsure"; ``None`` when validation had no
            correct prediction to choose it from.
        ece_before: expected calibration error on the fitting split before this fit.
        ece_after: the same after it.
        num_bins: equal-width confidence bins of the ECE.
        keep_correct: share of correctly classified fitting images that the threshold keeps.
        fitted_on: the split the temperature and threshold were fitted on.
        num_images: how many images the temperature rests on (``None``: not recorded, an older model).
        num_correct: how many of them were classified correctly: the threshold rests on these.
        temperature_interval: the fitted temperature's 95 % bootstrap interval, where it rests on few images
            (``flowers_hf.evaluation.few_images``); ``None`` otherwise.
        threshold_interval: the same for the unsure threshold (at the fitted temperature).
    """

    temperature: float
    unsure_threshold: float | None
    ece_before: float
    ece_after: float
    num_bins: int = NUM_BINS
    keep_correct: float = KEEP_CORRECT
    fitted_on: str = "validation"
    num_images: int | None = None
    num_correct: int | None = None
    temperature_interval: list[float] | None = None
    threshold_interval: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> Calibration | None:
        """The calibration recorded in a model config (``config.calibration``), or ``None``."""
        stored = getattr(config, CONFIG_KEY, None)
        if not stored:
            return None
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` in float64 (scipy's).

    Args:
        logits: class scores, classes last.
        temperature: the calibration temperature (1: the logits as they are).
    """
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per confidence bin: the number of images, their accuracy and their mean top-1 probability (0 if empty)."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap between accuracy and confidence."""
        total = self.counts.sum()
        return float(np.sum(self.counts * np.abs(self.accuracy - self.confidence)) / total) if total else 0.0


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> ReliabilityBins:
    """Group images by top-1 probability into ``num_bins`` equal-width bins ``(k/M, (k+1)/M]``.

    Args:
        probabilities: class probabilities, shape (n, classes).
        labels: true class ids, shape (n,).
        num_bins: the number of bins M.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    counts = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, np.bincount(index, correct, num_bins) / counts, 0.0)
        mean_confidence = np.where(counts > 0, np.bincount(index, confidence, num_bins) / counts, 0.0)
    return ReliabilityBins(edges, counts, accuracy, mean_confidence)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """ECE with ``num_bins`` equal-width bins of top-1 probability (Naeini et al., 2015; Guo et al., 2017).

    Args:
        probabilities: class probabilities, shape (n, classes).
        labels: true class ids, shape (n,).
        num_bins: the number of bins.
    """
    return reliability_bins(probabilities, labels, num_bins).ece


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)``."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(np.asarray(labels))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``softmax(logits / T)`` (:func:`nll_optimal_temperatures`),
    clipped to [0.01, 100] with a warning.

    Args:
        logits: held-out class scores, shape (n, classes).
        labels: true class ids, shape (n,).
    """
    temperature = float(nll_optimal_temperatures(np.asarray(logits)[None], np.asarray(labels)[None])[0])
    low, high = _TEMPERATURE_RANGE
    if np.isclose(temperature, low, rtol=1e-6) or np.isclose(temperature, high, rtol=1e-6):
        # Every held-out image classified correctly drives T to 0; none drives it up without bound.
        logger.warning("Fitted temperature lies outside [%g, %g]; clipped to %g", low, high, temperature)
    return temperature


def nll_optimal_temperatures(logits: np.ndarray, labels: np.ndarray, steps: int = 64) -> np.ndarray:
    """For each of several sets of logits at once (a bootstrap's resamples), the temperature in [0.01, 100] that
    minimises the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``b = 1 / T`` and its derivative, ``mean(E_softmax(b·z)[z] - z_label)``, rises with ``b``:
    bisection on its sign in ``log b`` finds the minimum to float precision in 64 steps, for every set together.

    Args:
        logits: class scores, shape (sets, n, classes).
        labels: true class ids, shape (sets, n).
        steps: bisection steps.
    """
    logits = np.asarray(logits, dtype=np.float64)
    label_logit = np.take_along_axis(logits, np.asarray(labels)[..., None], axis=-1)[..., 0]
    low, high = (
        np.full(len(logits), -np.log(_TEMPERATURE_RANGE[1])),
        np.full(len(logits), -np.log(_TEMPERATURE_RANGE[0])),
    )
    for _ in range(steps):
        middle = (low + high) / 2
        scaled = np.exp(middle)[:, None, None] * logits
        rising = ((softmax(scaled, axis=-1) * logits).sum(axis=-1) - label_logit).mean(axis=-1) > 0
        low, high = np.where(rising, low, middle), np.where(rising, middle, high)
    return np.exp(-(low + high) / 2).clip(*_TEMPERATURE_RANGE)


def unsure_threshold(probabilities: np.ndarray, labels: np.ndarray, keep_correct: float = KEEP_CORRECT) -> float | None:
    """The highest top-1 probability that still accepts ``keep_correct`` of the correctly classified images.

    Predictions below it are "unsure". Fixing the share of *correct* answers kept (the true-positive rate, as
    out-of-distribution detection usually does at 95 %) bounds the cost of the rule; the wrong answers it turns away
    are its gain. ``None`` when no image is classified correctly.

    Args:
        probabilities: calibrated class probabilities, shape (n, classes).
        labels: true class ids, shape (n,).
        keep_correct: share of correctly classified images whose confidence is at or above the threshold.
    """
    probabilities = np.asarray(probabilities)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    return keeping_threshold(probabilities.max(axis=1)[correct], keep_correct)


def keeping_threshold(scores: np.ndarray, keep: float = KEEP_CORRECT) -> float | None:
    """The highest threshold that ``keep`` of ``scores`` lie at or above; ``None`` for no scores.

    Args:
        scores: the scores of the images to keep (higher: keep), shape (n,).
        keep: the share of them at or above the threshold.
    """
    scores = np.sort(np.asarray(scores))
    if scores.size == 0:
        return None
    rejected = int(np.floor((1.0 - keep) * scores.size + 1e-9))  # at most this many
    return float(scores[rejected])


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    num_bins: int = NUM_BINS,
    keep_correct: float = KEEP_CORRECT,
    fitted_on: str = "validation",
) -> Calibration:
    """Fit the temperature and the unsure threshold on held-out logits; record the ECE before and after.

    Args:
        logits: held-out class scores of the model as it is, shape (n, classes).
        labels: true class ids, shape (n,).
        num_bins: ECE bins.
        keep_correct: see :func:`unsure_threshold`.
        fitted_on: the split's name, for the record.
    """
    temperature = fit_temperature(logits, labels)
    interval = temperature_interval(logits, labels, temperature, fitted_on)  # of the fit, applied or not (below)
    ece_before = expected_calibration_error(probabilities(logits), labels, num_bins)
    ece_after = expected_calibration_error(probabilities(logits, temperature), labels, num_bins)
    if ece_after > ece_before:
        # The NLL-optimal temperature need not lower the ECE (small or weak models): one that raises it on the
        # very split it was fitted on would make the "calibrated" probabilities worse by the measure we report.
        logger.warning(
            "Temperature scaling (T = %.4f) would raise the %s ECE from %.4f to %.4f: not applied (T = 1)",
            temperature, fitted_on, ece_before, ece_after,
        )  # fmt: skip
        temperature, ece_after = 1.0, ece_before
    calibrated = probabilities(logits, temperature)
    threshold = unsure_threshold(calibrated, labels, keep_correct)
    confident = calibrated.max(axis=1)[calibrated.argmax(axis=1) == np.asarray(labels)]
    return Calibration(
        temperature=temperature,
        unsure_threshold=threshold,
        ece_before=ece_before,
        ece_after=ece_after,
        num_bins=num_bins,
        keep_correct=keep_correct,
        fitted_on=fitted_on,
        num_images=len(labels),
        num_correct=len(confident),
        temperature_interval=interval,
        threshold_interval=interval_if_few(
            "the unsure threshold",
            threshold,
            len(confident),
            lambda rows: np.array([keeping_threshold(confident[resample], keep_correct) for resample in rows]),
            f"correctly classified {fitted_on} images",
        ),
    )


def temperature_interval(
    logits: np.ndarray, labels: np.ndarray, temperature: float, fitted_on: str
) -> list[float] | None:
    """The fitted temperature's bootstrap interval, with a warning, where it rests on few images
    (:func:`flowers_hf.evaluation.few_images.interval_if_few`); the resamples refitted all at once."""
    logits, labels = np.asarray(logits), np.asarray(labels)

    def refit(rows: np.ndarray) -> np.ndarray:
        return nll_optimal_temperatures(logits[rows], labels[rows])

    return interval_if_few("the temperature T", temperature, len(labels), refit, f"{fitted_on} images")


@torch.no_grad()
def fold_temperature(timm_model: torch.nn.Module, temperature: float) -> None:
    """Divide the classifier's weight and bias by ``temperature``: the model then outputs ``logits / temperature``.

    Args:
        timm_model: a timm model whose ``get_classifier()`` is the last layer: a ``Linear`` or a 1×1 ``Conv2d``.
        temperature: a positive scalar.
    """
    head = timm_model.get_classifier()
    is_pointwise_conv = isinstance(head, torch.nn.Conv2d) and head.kernel_size == (1, 1)
    if not (isinstance(head, torch.nn.Linear) or is_pointwise_conv):
        raise ValueError(
            f"cannot fold a temperature into a classifier of type {type(head).__name__}: only a Linear or 1×1 "
            "Conv2d head gives logits / T when its weight and bias are divided by T"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)


def calibrate_model(
    model: TimmWrapperForImageClassification,
    logits: np.ndarray,
    labels: np.ndarray,
    num_bins: int = NUM_BINS,
    keep_correct: float = KEEP_CORRECT,
) -> Calibration:
    """Fit temperature and threshold on held-out logits of ``model``, fold the temperature into its head and record
    the calibration in ``model.config`` (``save_model`` writes it to ``config.json``).

    A model that is already calibrated gets a temperature near 1 from its own logits; it is folded in on top and
    the recorded temperature is the product, so the record always says how far the saved logits are from the
    uncalibrated ones. A head that cannot take the temperature (see :func:`fold_temperature`) is left alone with a
    warning and nothing is recorded: the fit is returned all the same, so that a finished training run still ends.

    Args:
        model: a ``TimmWrapperForImageClassification``; ``logits`` must come from it as it is now.
        logits: class scores on the validation split, shape (n, classes).
        labels: true class ids, shape (n,).
        num_bins: ECE bins.
        keep_correct: see :func:`unsure_threshold`.
    """
    fitted = fit_calibration(logits, labels, num_bins, keep_correct)
    try:
        fold_temperature(model.timm_model, fitted.temperature)
    except ValueError as error:
        logger.warning("Calibration not stored with the model, whose probabilities stay uncalibrated: %s", error)
        return fitted
    previous = Calibration.from_config(model.config)
    if previous is not None:
        logger.warning(
            "The model was calibrated before (T = %.4f); the new fit (T = %.4f) is folded in on top: T = %.4f in all",
            previous.temperature,
            fitted.temperature,
            previous.temperature * fitted.temperature,
        )
        interval = fitted.temperature_interval and [
            previous.temperature * bound for bound in fitted.temperature_interval
        ]
        fitted = dataclasses.replace(
            fitted, temperature=previous.temperature * fitted.temperature, temperature_interval=interval
        )
    setattr(model.config, CONFIG_KEY, fitted.to_dict())
    logger.info(
        "Calibration on validation: T = %.4f, ECE %.4f -> %.4f, unsure below %s",
        fitted.temperature,
        fitted.ece_before,
        fitted.ece_after,
        "—" if fitted.unsure_threshold is None else f"{fitted.unsure_threshold:.4f}",
    )
    return fitted
