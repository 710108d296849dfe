"""The teacher of knowledge distillation (``train.py --teacher``): a finished run folder or a Hub model of this
project, loaded once per process, frozen, in eval mode, answering for the very view the student is shown.

The student's batches reach the teacher as the student's model input (augmented, mixed where mixup is on,
normalised with the student's mean and std at the student's size). The teacher gets the same pixels back in its own
contract: un-normalised, resized to its input size where that differs, normalised with its mean and std. Its
logits are taken before its calibration: ``train.py`` folds a fitted temperature into a saved model's head, and
the distillation temperature must soften the teacher's own logits, not the calibrated ones.

The teacher is not part of the student: checkpoints do not hold it, and a resumed run loads it again from
``--teacher`` (kept in ``train_config.yaml``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F

from flowers_hf.core.errors import ClassMismatchError
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.evaluation.calibration import Calibration
from flowers_hf.evaluation.evaluator import Evaluator
from flowers_hf.evaluation.scoring import classification_scores
from flowers_hf.serving.classifier import ImageClassifier

logger = logging.getLogger(__name__)

_RESIZE_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


class Teacher:
    """A trained classifier whose softened outputs a student learns from.

    Args:
        classifier: the teacher with its eval preprocessing (``ImageClassifier.from_pretrained`` of a run folder or
            ``owner/name`` on the Hub: safetensors weights, no remote code), on the student's device.
        student_prep: the student's input contract, in which the teacher's inputs arrive.
        class_names: the student's class names; the teacher must have the same ones (its outputs are put in this
            order when its own order differs).
        source: the run folder or Hub id the teacher came from, as given.
    """

    def __init__(
        self, classifier: ImageClassifier, student_prep: Preprocessing, class_names: list[str], source: str
    ) -> None:
        self.classifier = classifier
        self.student_prep = student_prep
        self.source = source
        self.order = _class_order(classifier.class_names, class_names, source)
        calibration = Calibration.from_config(classifier.model.config)
        self.calibration_temperature = calibration.temperature if calibration is not None else 1.0
        for parameter in classifier.model.parameters():
            parameter.requires_grad_(False)
        logger.info(
            "Teacher %s: %s at %s px, its calibration temperature %.4g undone for distillation",
            source,
            classifier.model.config.architecture,
            "×".join(map(str, classifier.prep.input_size)),
            self.calibration_temperature,
        )

    @property
    def prep(self) -> Preprocessing:
        """The teacher's own input contract."""
        return self.classifier.prep

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The teacher's uncalibrated logits, in the student's class order, for a batch of the student's input.

        Args:
            pixels: the student's float model input, shape (n, 3, H, W), on the teacher's device.
        """
        model = self.classifier.model
        model.eval()  # the student's Trainer switches modules to training mode; the teacher never trains
        calibrated = model(teacher_view(pixels, self.student_prep, self.prep)).logits
        return (calibrated.float() * self.calibration_temperature)[:, self.order]


def teacher_view(pixels: torch.Tensor, student: Preprocessing, teacher: Preprocessing) -> torch.Tensor:
    """The student's model input in the teacher's contract: the same pixels, resized to the teacher's input size where
    it differs (its interpolation, antialiased when shrinking) and normalised with its mean and std. Unchanged when
    both contracts agree on size, mean and std.

    Args:
        pixels: normalised float images, shape (n, 3, H, W).
        student: the contract they are normalised in.
        teacher: the contract to put them in.
    """
    same_size = tuple(pixels.shape[-2:]) == tuple(teacher.input_size)
    if same_size and student.mean == teacher.mean and student.std == teacher.std:
        return pixels
    images = pixels.float() * _channels(student.std, pixels) + _channels(student.mean, pixels)
    if not same_size:
        mode = _RESIZE_MODES.get(teacher.interpolation, "bilinear")
        shrink = teacher.input_size[0] < pixels.shape[-2] or teacher.input_size[1] < pixels.shape[-1]
        images = F.interpolate(
            images,
            size=tuple(teacher.input_size),
            mode=mode,
            align_corners=None if mode == "nearest" else False,
            antialias=shrink and mode != "nearest",
        )
    return (images - _channels(teacher.mean, images)) / _channels(teacher.std, images)


def _channels(values: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def _class_order(teacher_names: list[str], student_names: list[str], source: str) -> torch.Tensor:
    """For each student class, the teacher's output index of the same name; ``ClassMismatchError`` naming the
    differences when the two class lists are not the same set."""
    missing = [name for name in student_names if name not in teacher_names]
    extra = [name for name in teacher_names if name not in student_names]
    if missing or extra or len(teacher_names) != len(student_names):
        raise ClassMismatchError(
            f"--teacher {source} was trained on other classes than this data set: "
            f"{len(teacher_names)} classes against {len(student_names)}"
            + (f"; not in the teacher: {_some(missing)}" if missing else "")
            + (f"; only in the teacher: {_some(extra)}" if extra else "")
            + ". A teacher must classify the same classes (train one on this data set first)."
        )
    if teacher_names != student_names:
        logger.info("The teacher lists the classes in another order; its outputs are reordered by name")
    return torch.tensor([teacher_names.index(name) for name in student_names])


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(name) for name in names[:shown]) + more


@dataclass(frozen=True)
class TeacherScores:
    """The teacher scored on the student's test split, with its own eval preprocessing.

    Attributes:
        source: ``--teacher`` as given.
        architecture: the teacher's timm architecture.
        metrics: ``test_accuracy``, ``test_top5_accuracy``, ``test_macro_f1``, ``test_mean_per_class_accuracy``.
        num_images: the test images scored.
    """

    source: str
    architecture: str
    metrics: dict[str, float]
    num_images: int


def score_teacher(
    teacher: Teacher, test: datasets.Dataset, batch_size: int, num_workers: int, disable_tqdm: bool
) -> TeacherScores:
    """The teacher's scores on ``test`` (the checked, untransformed split), read through its own eval transform as
    ``python -m flowers_hf.evaluate`` reads a run: the figure the model card sets beside the student's.

    Args:
        teacher: the loaded teacher.
        test: the test split, untransformed.
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        disable_tqdm: no progress bar.
    """
    evaluator = Evaluator(teacher.classifier, batch_size, num_workers, disable_tqdm)
    predictions = evaluator.predict(test, "teacher on test")
    logits = predictions.logits[:, teacher.order.numpy()]
    metrics = classification_scores(logits, predictions.labels, "test")
    logger.info("Teacher %s on test: accuracy %.4f", teacher.source, metrics["test_accuracy"])
    architecture = teacher.classifier.model.config.architecture
    return TeacherScores(teacher.source, architecture, metrics, len(predictions.labels))
