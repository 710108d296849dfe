"""Passes of a saved model over a split: logits, labels and timings; the calibration the scores are read with."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from flowers_hf.data.pixels import ImageInput
from flowers_hf.data.transforms import ImageTransform, build_eval_transform
from flowers_hf.evaluation.calibration import NUM_BINS, Calibration, calibrate_model, fit_calibration
from flowers_hf.model.modeling import save_model
from flowers_hf.serving.classifier import ImageClassifier

logger = logging.getLogger(__name__)

Corruptor = Callable[[ImageInput, int], Image.Image]  # a row's image (the decoded copy's: undecoded) and its index


@dataclass
class Predictions:
    """One pass over a split: logits (``(n, classes)``, or ``(n, views, classes)`` with TTA), labels, timings."""

    logits: np.ndarray
    labels: np.ndarray
    seconds: float  # the whole pass: decoding, transforms, model
    model_seconds: float  # the forward passes only

    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / len(self.labels)

    def model_ms_per_image(self) -> float:
        return 1000.0 * self.model_seconds / len(self.labels)

    def timings(self, prefix: str) -> dict[str, float]:
        """``<prefix>_ms_per_image`` (the whole pass) and ``<prefix>_model_ms_per_image`` (the forward passes)."""
        return {
            f"{prefix}_ms_per_image": self.ms_per_image(),
            f"{prefix}_model_ms_per_image": self.model_ms_per_image(),
        }


class _Images(torch.utils.data.Dataset):
    """A split's rows as ``(transform(corruption(image, index)), label)``."""

    def __init__(self, split: datasets.Dataset, transform: ImageTransform, corruption: Corruptor | None) -> None:
        self.split, self.transform, self.corruption = split, transform, corruption

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.split[index]
        image = row["image"] if self.corruption is None else self.corruption(row["image"], index)
        return self.transform(image), row.get("label", -1)  # an image set (flowers_hf.data.image_set) has none


class Evaluator:
    """Runs passes of one model over splits, in batches, with the model's eval transform unless told otherwise.

    Args:
        classifier: the loaded model and its preprocessing.
        batch_size: images per forward pass (with TTA, times its views).
        num_workers: DataLoader worker processes.
        disable_tqdm: no progress bars.
    """

    def __init__(
        self, classifier: ImageClassifier, batch_size: int = 64, num_workers: int = 0, disable_tqdm: bool = False
    ) -> None:
        self.classifier = classifier
        self.batch_size, self.num_workers, self.disable_tqdm = batch_size, num_workers, disable_tqdm
        self.eval_transform = build_eval_transform(classifier.prep)
        self._warm_up()

    @torch.inference_mode()
    def predict(
        self,
        split: datasets.Dataset,
        description: str,
        transform: ImageTransform | None = None,
        corruption: Corruptor | None = None,
    ) -> Predictions:
        """Logits of every image of ``split`` (through ``corruption``, then ``transform``: the eval one by default)."""
        loader = torch.utils.data.DataLoader(
            _Images(split, transform or self.eval_transform, corruption),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )
        logits, labels, model_seconds = [], [], 0.0
        start = time.perf_counter()
        for pixels, batch_labels in tqdm(loader, desc=description, disable=self.disable_tqdm, leave=False):
            tick = time.perf_counter()
            logits.append(self._forward(pixels))
            model_seconds += time.perf_counter() - tick
            labels.append(batch_labels)
        seconds = time.perf_counter() - start
        return Predictions(torch.cat(logits).numpy(), torch.cat(labels).numpy(), seconds, model_seconds)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Views (N, V, 3, H, W) go through the model as N·V images. Moving the logits to the CPU waits for the
        # GPU, so the time measured is the time computed.
        model, device = self.classifier.model, self.classifier.device
        logits = model(pixels.flatten(0, 1).to(device) if pixels.ndim == 5 else pixels.to(device)).logits
        logits = logits.float().cpu()
        return logits.view(*pixels.shape[:2], -1) if pixels.ndim == 5 else logits

    @torch.inference_mode()
    def _warm_up(self) -> None:
        # One-off costs (allocations, cuDNN's algorithm search) stay out of the first timed pass.
        self._forward(torch.zeros(2, 3, *self.classifier.prep.input_size))


def resolve_calibration(
    evaluator: Evaluator,
    validation: datasets.Dataset,
    save_to: Path | None = None,
    num_bins: int = NUM_BINS,
    transform: ImageTransform | None = None,
) -> tuple[Calibration, bool]:
    """The calibration to read the scores with, and whether its temperature is folded into the model (then the
    model's logits are calibrated already): the one stored with the model, or one fitted now on ``validation``.

    Args:
        evaluator: runs the fitting pass.
        validation: the split to fit on.
        save_to: a model folder to fold a newly fitted calibration into and save (``--save_calibration``).
        num_bins: ECE bins.
        transform: the transform of ``validation``'s images (default: the eval transform).
    """
    classifier = evaluator.classifier
    stored = Calibration.from_config(classifier.model.config)
    if stored is not None:
        logger.info("Calibration stored with the model: T = %.4f, unsure threshold %s", stored.temperature,
                    "—" if stored.unsure_threshold is None else f"{stored.unsure_threshold:.4f}")  # fmt: skip
        if save_to is not None:
            logger.warning("--save_calibration: the model is calibrated already; nothing to save")
        return stored, True
    fitting = evaluator.predict(validation, "validation: fitting calibration", transform=transform)
    if save_to is None:
        calibration = fit_calibration(fitting.logits, fitting.labels, num_bins)
        logger.info(
            "No calibration stored with the model; fitted on validation: T = %.4f (store it with --save_calibration)",
            calibration.temperature,
        )
        return calibration, False
    calibration = calibrate_model(classifier.model, fitting.logits, fitting.labels, num_bins)
    if Calibration.from_config(classifier.model.config) is None:  # the head could not take the temperature
        return calibration, False
    save_model(classifier.model, save_to, classifier.prep)
    logger.info("Stored the calibration in %s", save_to / "config.json")
    return calibration, True


def uncalibrated(logits: np.ndarray, calibration: Calibration, folded: bool) -> np.ndarray:
    """The logits before temperature scaling (the model's own, unless the temperature is folded into it)."""
    return logits * calibration.temperature if folded else logits
