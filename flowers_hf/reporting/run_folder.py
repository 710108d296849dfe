"""What a run leaves behind besides checkpoints: configuration, class weights, the model folder, results, reports,
plots, the model card, and the push to the Hub, written by one call at the end of ``train.py``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from transformers import TimmWrapperForImageClassification

from flowers_hf.core.disk import disk_full_guard
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.holdout import held_out_names
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import ImageTransform
from flowers_hf.evaluation.calibration import Calibration
from flowers_hf.evaluation.metrics import classification_report
from flowers_hf.evaluation.mistakes import confused_pairs, per_class_accuracy, top_mistakes
from flowers_hf.evaluation.ood import open_set_report, score_pairs, store_rule
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import save_model
from flowers_hf.reporting.card_sections import (
    DISTILLATION_FILE,
    add_distillation_section,
    add_exclusion_section,
    add_open_set_section,
)
from flowers_hf.reporting.model_card import RunSummary, write_model_card
from flowers_hf.reporting.plots import (
    plot_accuracy_curve,
    plot_augmentation_samples,
    plot_confusion_matrix,
    plot_loss_curve,
    plot_ood_scores,
    plot_per_class_accuracy,
    plot_reliability_diagram,
    plot_top_mistakes,
)
from flowers_hf.reporting.publish import push_model
from flowers_hf.serving.run import RUN_CONFIG_FILE
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.data_path import TrainingData
from flowers_hf.training.distill import TeacherScores
from flowers_hf.training.final_pass import FinalScores
from flowers_hf.training.stages import StageResult, merged_history

logger = logging.getLogger(__name__)

CONFIG_FILE = RUN_CONFIG_FILE
REPORTS_BYTES = 20 * 1024 * 1024  # the reports, plots and card of a run: a few MB (102 classes), 20 with a margin
EVALUATE_CONFIG_FILE = "evaluate_config.yaml"
CLASS_WEIGHTS_FILE = "class_weights.json"
CLASSIFICATION_REPORT = "classification_report.json"
CONFUSION_MATRIX = "confusion_matrix.png"
LOSS_CURVE = "loss_curve.png"
ACCURACY_CURVE = "accuracy_curve.png"
AUGMENTATION_SAMPLES = "augmentation_samples.png"
RELIABILITY_PLOT = "reliability_diagram.png"  # validation (train.py) or the evaluated split, before and after scaling
ROBUSTNESS_FILE = "robustness.json"
ROBUSTNESS_PLOT = "robustness.png"
TOP_MISTAKES = "top_mistakes.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
CONFUSIONS_FILE = "confusions.json"
OOD_FILE = "ood.json"  # images of none of the classes: train.py --holdout_classes, python -m flowers_hf.evaluate --ood
OOD_PLOT = "ood_scores.png"
# The figures the model card shows, in this order.
PLOTS = (
    CONFUSION_MATRIX,
    PER_CLASS_ACCURACY,
    TOP_MISTAKES,
    LOSS_CURVE,
    ACCURACY_CURVE,
    AUGMENTATION_SAMPLES,
    RELIABILITY_PLOT,
)
CARD_CONFUSIONS = 10  # most-confused pairs the model card lists (confusions.json has more)


@dataclass
class FinishedRun:
    """Everything a finished training run has to write: the model, what it was trained on and how, its scores.

    Args:
        model: the trained (and calibrated) classifier.
        prep: its preprocessing.
        arguments: the run's model, data, transform and training arguments.
        data: the splits (``raw``: untransformed) and the training transform (for the augmentation samples).
        stages: the stages' results.
        scores: the last pass: metrics, validation and test logits, calibration, the held-out classes' logits.
        teacher: with ``--teacher``, the teacher's scores on the same test split; ``None`` otherwise.
    """

    model: TimmWrapperForImageClassification
    prep: Preprocessing
    arguments: tuple[ModelArguments, DataArguments, TransformArguments, FlowersTrainingArguments]
    data: TrainingData
    stages: list[StageResult]
    scores: FinalScores
    teacher: TeacherScores | None = None


def write_run_folder(run: FinishedRun, output_dir: Path, hub_token: str | None = None) -> None:
    """The model folder: weights and config for transformers and timm, test report, plots, model card; then the push
    to the Hub when ``--push_to_hub`` asks for it.

    Args:
        run: the finished run.
        output_dir: the run's output folder.
        hub_token: the token for the push (``FlowersTrainingArguments.take_hub_token``); ``None``: ``HF_TOKEN`` or
            the login cache.
    """
    args = run.arguments[3]
    open_set = _held_out_report(run)  # before saving: the recommended rule goes into config.json
    save_model(run.model, output_dir, run.prep)
    then = "the same command, run again, writes the folder without training again"
    with disk_full_guard(output_dir, REPORTS_BYTES, then=then):
        _write_reports(run, output_dir, open_set)
    logger.info("Model, reports and plots written to %s", output_dir)
    if args.push_to_hub:
        push_model(output_dir, args.hub_model_id, token=hub_token, private=bool(args.hub_private_repo))


def _write_reports(run: FinishedRun, output_dir: Path, open_set: dict[str, Any] | None) -> None:
    """The test report, plots, model card and open-set report of ``write_run_folder``."""
    model_args, _, _, args = run.arguments
    class_names = run.data.class_names
    confusions = write_test_report(
        *run.scores.test, class_names, output_dir, run.data.raw["test"], run.prep, run.scores.calibration.temperature
    )["pairs"]
    plot_reliability_diagram(*run.scores.validation, run.scores.calibration.temperature, output_dir / RELIABILITY_PLOT)
    write_plots(merged_history(run.stages), run.data.raw["train"], run.data.train_transform, run.prep, output_dir)
    summary = run_summary(run.model, model_args, args, run.prep, run.data.raw, run.stages, run.scores.metrics)
    summary.confusions = confusions[:CARD_CONFUSIONS]
    write_model_card(summary, output_dir)
    add_exclusion_section(output_dir / "README.md", output_dir)
    if run.teacher is not None:
        add_distillation_section(output_dir / "README.md", write_distillation(run, output_dir))
    if open_set is not None:
        pairs = score_pairs(run.scores.test[0], run.scores.held_out, run.scores.calibration.temperature)
        write_open_set(open_set, pairs, output_dir, output_dir)


def write_distillation(run: FinishedRun, output_dir: Path) -> dict[str, Any]:
    """``distillation.json``: the teacher, the loss's weights, and the teacher's and the student's test scores."""
    args = run.arguments[3]
    record = {
        "teacher": run.teacher.source,
        "teacher_architecture": run.teacher.architecture,
        "student_architecture": run.model.config.architecture,
        "alpha": args.distill_alpha,
        "temperature": args.distill_temperature,
        "num_test_images": run.teacher.num_images,
        "teacher_test_metrics": run.teacher.metrics,
        "student_test_metrics": {key: run.scores.metrics["test"][key] for key in run.teacher.metrics},
    }
    (output_dir / DISTILLATION_FILE).write_text(json.dumps(record, indent=2))
    return record


def _held_out_report(run: FinishedRun) -> dict[str, Any] | None:
    """``--holdout_classes``: the held-out classes' test images scored as ``evaluate --ood`` scores a set; the
    recommended rule stored in the model's config."""
    if run.scores.held_out is None:
        return None
    names = held_out_names(run.data.raw)
    source = f"{len(names)} classes held out of training ({', '.join(names)})"
    report = open_set_report(
        run.scores.test, run.scores.validation, run.scores.held_out, run.scores.calibration, source
    )
    return {**report, "held_out_classes": names, "rule_stored": store_rule(run.model, report) is not None}


def write_open_set(
    report: dict[str, Any],
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    output_dir: Path,
    run_dir: Path | None,
) -> None:
    """``ood.json`` and ``ood_scores.png`` in ``output_dir``; their section in the card of ``run_dir``, if it has one.

    Args:
        report: the figures (``flowers_hf.evaluation.ood.open_set_report``).
        pairs: the scores they come from (``flowers_hf.evaluation.ood.score_pairs``).
        output_dir: where the files go.
        run_dir: the run folder whose ``README.md`` shows them, or ``None``.
    """
    (output_dir / OOD_FILE).write_text(json.dumps(report, indent=2))
    plot_ood_scores(pairs, report, output_dir / OOD_PLOT)
    card = run_dir / "README.md" if run_dir is not None else None
    if card is not None and card.is_file():
        add_open_set_section(card, report, Path(os.path.relpath(output_dir / OOD_PLOT, run_dir)).as_posix())


def save_config(args: tuple[Any, ...], output_dir: Path) -> Path:
    """Write every argument as a YAML preset that ``--config`` reads back (``FlowersTrainingArguments.to_preset``)."""
    config: dict[str, Any] = {}
    for instance in args:
        config.update(instance.to_preset() if hasattr(instance, "to_preset") else vars(instance))
    path = output_dir / CONFIG_FILE
    path.write_text(yaml.safe_dump(_plain(config), sort_keys=False))
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def save_class_weights(weights: torch.Tensor | None, strategy: str, num_classes: int, output_dir: Path) -> Path:
    """``class_weights.json``: ``{"strategy": …, "weights": [one per class id]}`` (all 1 for ``none``)."""
    path = output_dir / CLASS_WEIGHTS_FILE
    values = [1.0] * num_classes if weights is None else [round(w, 6) for w in weights.tolist()]
    path.write_text(json.dumps({"strategy": strategy, "weights": values}, indent=2))
    return path


def write_test_report(
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    output_dir: Path,
    images: datasets.Dataset | None = None,
    prep: Preprocessing | None = None,
    temperature: float = 1.0,
    num_mistakes: int = 16,
) -> dict[str, Any]:
    """What a person reads about a split's predictions: ``classification_report.json``, ``confusion_matrix.png``,
    ``per_class_accuracy.png``, ``confusions.json`` (most-confused pairs, returned) and, given the split's images and
    the preprocessing, ``top_mistakes.png`` (the most confident wrong predictions, as the model saw them).

    Args:
        logits: class scores of the split, shape (n, classes).
        labels: true class ids, shape (n,).
        class_names: names in class id order.
        output_dir: where the files go.
        images: the split, untransformed, in the order of ``logits`` (its ``image`` column).
        prep: the model's preprocessing, to show each image as the model saw it.
        temperature: ``softmax(logits / temperature)`` are the model's (calibrated) probabilities.
        num_mistakes: how many mistakes ``top_mistakes.png`` shows at most.
    """
    report = classification_report(logits, labels, class_names)
    (output_dir / CLASSIFICATION_REPORT).write_text(json.dumps(report, indent=2))
    predictions = logits.argmax(axis=1)
    plot_confusion_matrix(labels, predictions, class_names, output_dir / CONFUSION_MATRIX)
    accuracy = per_class_accuracy(labels, predictions, len(class_names))
    plot_per_class_accuracy(accuracy, class_names, output_dir / PER_CLASS_ACCURACY)
    confusions = {
        "num_images": len(labels),
        "num_wrong": int((predictions != labels).sum()),
        "pairs": confused_pairs(labels, predictions, class_names),
    }
    (output_dir / CONFUSIONS_FILE).write_text(json.dumps(confusions, indent=2))
    if images is not None and prep is not None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images for {len(labels)} predictions: not the predicted split")
        mistakes = top_mistakes(logits, labels, num_mistakes, temperature)
        shown = images.select([mistake.index for mistake in mistakes])["image"] if mistakes else []
        plot_top_mistakes(shown, mistakes, prep, class_names, output_dir / TOP_MISTAKES)
    return confusions


def write_plots(
    history: list[dict[str, Any]],
    train_split: datasets.Dataset,
    transform: ImageTransform,
    prep: Preprocessing,
    output_dir: Path,
    num_samples: int = 4,
) -> None:
    """``loss_curve.png``, ``accuracy_curve.png`` and ``augmentation_samples.png``."""
    plot_loss_curve(history, output_dir / LOSS_CURVE)
    plot_accuracy_curve(history, output_dir / ACCURACY_CURVE)
    rows = train_split.shuffle(seed=0).select(range(min(num_samples, len(train_split))))
    class_names = train_split.features["label"].names
    plot_augmentation_samples(
        rows["image"],
        rows["label"],
        transform,
        prep.mean,
        prep.std,
        class_names,
        output_dir / AUGMENTATION_SAMPLES,
    )


def run_summary(
    model: TimmWrapperForImageClassification,
    model_args: ModelArguments,
    args: FlowersTrainingArguments,
    prep: Preprocessing,
    data: datasets.DatasetDict,
    results: list[StageResult],
    metrics: dict[str, dict[str, float]],
) -> RunSummary:
    """What the model card says about a finished run.

    Args:
        model: the trained ``TimmWrapperForImageClassification``.
        model_args: where the model and its initial weights came from.
        args: the training arguments.
        prep: the preprocessing.
        data: the splits (untransformed).
        results: the stages' results.
        metrics: ``{"eval": …, "test": …}`` of the best model.
    """
    return RunSummary(
        architecture=model.config.architecture,
        base_weights=_initial_weights(model_args, model.timm_model.pretrained_cfg),
        dataset=DatasetIdentity.from_dict(getattr(model.config, "dataset", None)),
        split_sizes={name: len(split) for name, split in data.items()},
        class_names=data["train"].features["label"].names,
        preprocessing=prep,
        stages=[stage_summary(result) for result in results],
        training=recipe(args),
        validation_metrics=metrics["eval"],
        test_metrics=metrics["test"],
        plots=list(PLOTS),
        calibration=Calibration.from_config(model.config),
    )


def _initial_weights(model_args: ModelArguments, pretrained_cfg: dict[str, Any]) -> str | None:
    if model_args.pretrained_path is not None:
        return model_args.pretrained_path
    if not model_args.pretrained:
        return None
    return pretrained_cfg.get("hf_hub_id") or model_args.model


def stage_summary(result: StageResult) -> dict[str, Any]:
    """One stage as the model card shows it."""
    return {
        "name": result.stage.description,
        "epochs": result.stage.epochs,
        "epochs_run": round(result.epochs_run, 2),
        "learning_rate": result.stage.learning_rate,
        "best_validation_accuracy": result.best_metric,
    }


def recipe(args: FlowersTrainingArguments) -> dict[str, Any]:
    """The training facts the model card lists."""
    return {
        "batch size per device": args.per_device_train_batch_size,
        "gradient accumulation": args.gradient_accumulation_steps,
        "optimizer": str(getattr(args.optim, "value", args.optim)),
        "weight decay": args.weight_decay,
        "lr scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup": args.warmup_steps,
        "backbone lr scale": args.backbone_learning_rate_scale,
        "label smoothing": args.label_smoothing_factor,
        "class weights": args.class_weights,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "early stopping patience": args.early_stopping_patience,
        "seed": args.seed,
    }
