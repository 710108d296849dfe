"""Knowledge distillation: the teacher's view of the student's input, its uncalibrated logits in the student's class
order, a teacher of other classes refused, and train.py --teacher end to end (α = 1 is plain training exactly; the
card and distillation.json set the teacher's test score beside the student's)."""

import json

import numpy as np
import pytest
import torch
from helpers import TINY_RUN
from transformers import TrainingArguments

import train
from flowers_hf.core.cli import parse_args
from flowers_hf.core.errors import ArgumentError, ClassMismatchError
from flowers_hf.data.mixup import build_mixer
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import collate_fn, normalize_pixels
from flowers_hf.evaluation.calibration import Calibration, fold_temperature
from flowers_hf.model.modeling import save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.distill import Teacher, teacher_view
from flowers_hf.training.loss import WeightedCrossEntropy
from flowers_hf.training.trainer import ClassWeightedTrainer

STUDENT = Preprocessing((32, 32), 0.875, "center", "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TEACHER = Preprocessing((48, 48), 0.9, "center", "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _normalised(colour: tuple[float, float, float], prep: Preprocessing, size: tuple[int, int]) -> torch.Tensor:
    pixels = torch.tensor(colour).view(1, 3, 1, 1).expand(2, 3, *size)
    return (pixels - torch.tensor(prep.mean).view(1, 3, 1, 1)) / torch.tensor(prep.std).view(1, 3, 1, 1)


def test_the_teacher_sees_the_students_pixels_in_its_own_size_and_normalisation():
    colour = (0.8, 0.3, 0.1)
    student_input = _normalised(colour, STUDENT, (32, 32))
    seen = teacher_view(student_input, STUDENT, TEACHER)
    assert seen.shape == (2, 3, 48, 48)
    assert torch.allclose(seen, _normalised(colour, TEACHER, (48, 48)), atol=1e-5)
    # Smaller too (antialiased), and no work at all where the two contracts agree.
    assert teacher_view(_normalised(colour, TEACHER, (48, 48)), TEACHER, STUDENT).shape == (2, 3, 32, 32)
    assert teacher_view(student_input, STUDENT, STUDENT) is student_input


def _calibrated_copy(folder, tmp_path, temperature: float):
    """The model of ``folder`` with ``temperature`` folded into its head and recorded, as train.py saves one."""
    classifier = ImageClassifier.from_pretrained(folder)
    model = classifier.model
    with torch.no_grad():
        fold_temperature(model.timm_model, temperature)
    model.config.calibration = Calibration(temperature, None, 0.1, 0.05).to_dict()
    save_model(model, tmp_path / "calibrated", classifier.prep)
    return tmp_path / "calibrated"


def test_the_teacher_gives_its_uncalibrated_logits_in_the_students_class_order(untrained_folder, tmp_path):
    classifier = ImageClassifier.from_pretrained(untrained_folder)
    names = classifier.class_names
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = Teacher(classifier, classifier.prep, names, "plain").logits(pixels)
    with torch.no_grad():
        assert torch.allclose(plain, classifier.model(pixels).logits)

    calibrated_folder = _calibrated_copy(untrained_folder, tmp_path, temperature=0.25)
    calibrated = Teacher(ImageClassifier.from_pretrained(calibrated_folder), classifier.prep, names, "calibrated")
    assert calibrated.calibration_temperature == 0.25
    with torch.no_grad():  # its saved logits are 4 times the teacher's own; distillation softens the own ones
        assert torch.allclose(calibrated.classifier.model(pixels).logits, 4 * plain, atol=1e-5)
    assert torch.allclose(calibrated.logits(pixels), plain, atol=1e-5)

    reordered = Teacher(classifier, classifier.prep, names[::-1], "plain").logits(pixels)
    assert torch.equal(reordered, plain.flip(-1))


def test_a_teacher_of_other_classes_is_refused_with_the_names_that_differ(untrained_folder):
    classifier = ImageClassifier.from_pretrained(untrained_folder)
    names = [*classifier.class_names[:3], "dandelion clock"]
    with pytest.raises(ClassMismatchError, match="not in the teacher: 'dandelion clock'") as refused:
        Teacher(classifier, classifier.prep, names, "runs/other")
    assert f"only in the teacher: {classifier.class_names[3]!r}" in str(refused.value)
    assert "--teacher runs/other" in str(refused.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--distill_alpha", "1.5"], "--distill_alpha must lie in"),
        (["--distill_temperature", "0"], "--distill_temperature must be positive"),
        (["--teacher", " "], "--teacher is empty"),
    ],
)
def test_impossible_distillation_options_are_refused(flags, message, tmp_path):
    with pytest.raises(ArgumentError, match=message):
        parse_args((FlowersTrainingArguments,), ["--output_dir", str(tmp_path), *flags])


# The student: TINY_RUN's data and model (the teacher is tiny_run, trained 3 epochs on it), one epoch.
STUDENT_RUN = [*TINY_RUN, "--num_train_epochs", "1"]


_TIMINGS = ("runtime", "per_second", "preparation_time")


def _untimed(record: dict) -> dict:
    return {key: value for key, value in record.items() if not any(word in key for word in _TIMINGS)}


def _history(output) -> list[dict]:
    return [_untimed(r) for r in json.loads((output / "stage1" / "trainer_state.json").read_text())["log_history"]]


@pytest.mark.slow
def test_train_with_a_teacher(tiny_run, tmp_path):
    plain = train.main([*STUDENT_RUN, "--output_dir", str(tmp_path / "plain")])

    # α = 1: the teacher answers every step, and its term weighs nothing: exactly plain training.
    weightless = tmp_path / "alpha_one"
    alpha_one = train.main([*STUDENT_RUN, "--teacher", str(tiny_run), "--distill_alpha", "1", "--output_dir",
                            str(weightless)])  # fmt: skip
    assert _untimed(alpha_one) == _untimed(plain) and "test_accuracy" in plain
    assert _history(weightless) == _history(tmp_path / "plain")

    # α = 0.5: the teacher moves the training; the card and distillation.json say from what, with both test scores.
    output = tmp_path / "distilled"
    distilled = train.main([*STUDENT_RUN, "--teacher", str(tiny_run), "--output_dir", str(output)])
    assert _history(output)[0]["loss"] != _history(tmp_path / "plain")[0]["loss"]
    record = json.loads((output / "distillation.json").read_text())
    teacher_test = json.loads((tiny_run / "test_results.json").read_text())
    assert record["teacher"] == str(tiny_run) and (record["alpha"], record["temperature"]) == (0.5, 4.0)
    # The teacher scored on the same test images, with its own preprocessing, as its own run scored it.
    for key in ("test_accuracy", "test_macro_f1"):
        assert record["teacher_test_metrics"][key] == pytest.approx(teacher_test[key], abs=1e-9)
        assert record["student_test_metrics"][key] == distilled[key]
    assert record["num_test_images"] == json.loads((output / "confusions.json").read_text())["num_images"]
    card = (output / "README.md").read_text()
    assert "## Distillation" in card and f"Distilled from `{tiny_run}` (test_resnet)" in card
    assert f"| {100 * teacher_test['test_accuracy']:.2f}% |" in card.split("teacher `")[-1]
    assert "distill_alpha: 0.5" in (output / "train_config.yaml").read_text()  # a resume loads the teacher again


@pytest.mark.slow
def test_a_teacher_of_other_classes_stops_the_run_before_training(tiny_run, tmp_path):
    argv = [*STUDENT_RUN, "--synthetic_num_classes", "4", "--teacher", str(tiny_run), "--output_dir", str(tmp_path)]
    with pytest.raises(ClassMismatchError, match="6 classes against 4"):
        train.main(argv)
    assert not (tmp_path / "stage1").exists()


class _Watching:
    """A teacher that keeps the pixels it was shown and answers with their per-class means (a pure function of them)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def logits(self, pixels):
        self.seen.append(pixels.detach().clone())
        return pixels.mean((2, 3))


class _Images(torch.nn.Module):
    """A linear model of flat images that keeps the inputs of its training forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(3, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, pixel_values, labels=None):
        if self.training:
            self.seen.append(pixel_values.detach().clone())
        return {"logits": self.layer(pixel_values.mean((2, 3)))}


def test_with_mixup_the_teacher_is_shown_the_mixed_batch_the_student_trains_on(tmp_path):
    np.random.seed(0)
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    data = [{"pixel_values": image, "labels": label} for image, label in zip(images, labels, strict=True)]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=1, report_to=[], use_cpu=True,
        disable_tqdm=True, save_strategy="no", remove_unused_columns=False,
    )  # fmt: skip
    model, teacher = _Images(), _Watching()
    trainer = ClassWeightedTrainer(
        model=model, args=args, train_dataset=data, loss=WeightedCrossEntropy(), data_collator=collate_fn,
        mixer=build_mixer(3, mixup_alpha=1.0, cutmix_alpha=0.0), prep=STUDENT, teacher=teacher,
    )  # fmt: skip
    trainer.train()
    (shown,), (trained,) = teacher.seen, model.seen
    assert torch.equal(shown, trained)  # the very tensor the student trained on
    unmixed = normalize_pixels(images, STUDENT.mean, STUDENT.std)
    assert not any(torch.allclose(shown[0], image) for image in unmixed)  # and it was mixed
