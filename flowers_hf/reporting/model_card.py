"""The model card (``README.md``) of a trained run folder, written through ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from flowers_hf.core.hub import is_hub_id
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.evaluation.calibration import Calibration

logger = logging.getLogger(__name__)

# How a model card written before publishing refers to its own folder; the repo id replaces it on push.
LOCAL_PLACEHOLDER = "path/to/this/folder"


# (key suffix shared by "eval_*" and "test_*", row label, model-index metric type, name, args)
METRICS = (
    ("accuracy", "Accuracy (top-1)", "accuracy", "Accuracy", None),
    ("top5_accuracy", "Top-5 accuracy", "top_5_accuracy", "Top-5 accuracy", None),
    ("macro_f1", "Macro F1", "f1", "Macro F1", {"average": "macro"}),
    ("mean_per_class_accuracy", "Mean per-class accuracy", "mean_per_class_accuracy", "Mean per-class accuracy", None),
)

# What python -m flowers_hf.evaluate measures beyond the plain pass: (key suffix, model-index metric type, name).
LATER_METRICS = (
    ("tta_accuracy", "accuracy", "Accuracy with test-time augmentation"),
    ("mean_corruption_accuracy", "mean_corruption_accuracy", "Mean accuracy under corruption"),
    ("relative_mean_corruption_accuracy", "relative_mean_corruption_accuracy", "Corrupted accuracy / clean accuracy"),
)

_SECRET_KEY = re.compile(r"token|secret|password|api_key|credential", re.IGNORECASE)

# The card's Jinja template, a Markdown file beside this module (as huggingface_hub keeps its own).
TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")


@dataclass
class RunSummary:
    """What a trained run was and how it scored: everything the model card states.

    Args:
        architecture: the timm architecture, e.g. ``resnet18``.
        base_weights: where the initial weights came from: a Hub id (``timm/resnet18.a1_in1k``), a local file,
            or ``None`` for random initialisation.
        dataset: the data set the model was trained on (``flowers_hf.data.identity``).
        split_sizes: images per split, e.g. ``{"train": 1020, "validation": 1020, "test": 6149}``.
        class_names: class names in label id order.
        preprocessing: the model's input contract.
        stages: one dict per training stage with ``name``, ``epochs`` (planned), ``epochs_run``, ``learning_rate``
            and ``best_validation_accuracy``.
        training: recipe facts (batch size, optimizer, scheduler, seed, ...), shown as a table.
        validation_metrics: ``eval_*`` metrics of the final model on the validation split.
        test_metrics: ``test_*`` metrics of the final model on the test split.
        hub_model_id: ``user/name`` when the model is pushed to the Hub.
        plots: image file names inside the run folder, embedded in the card.
        confusions: the test split's most-confused pairs of classes
            (``flowers_hf.evaluation.mistakes.confused_pairs``), shown as a table.
        calibration: the temperature and unsure threshold stored with the model, and how many images they rest
            on (``flowers_hf.evaluation.calibration.Calibration``); ``None``: not calibrated.
    """

    architecture: str
    base_weights: str | None
    dataset: DatasetIdentity
    split_sizes: dict[str, int]
    class_names: list[str]
    preprocessing: Preprocessing
    stages: list[dict[str, Any]]
    training: dict[str, Any]
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    hub_model_id: str | None = None
    plots: list[str] = field(default_factory=list)
    confusions: list[dict[str, Any]] = field(default_factory=list)
    calibration: Calibration | None = None


def build_model_card(summary: RunSummary) -> ModelCard:
    """Render the card: YAML metadata (with model-index test results) and a body for a demanding reader.

    Args:
        summary: the run's facts and metrics.
    """
    return ModelCard.from_template(_card_data(summary), template_path=str(TEMPLATE_PATH), **_template_values(summary))


def write_model_card(summary: RunSummary, output_dir: str | Path) -> Path:
    """Write ``output_dir/README.md`` and return its path.

    Args:
        summary: the run's facts and metrics.
        output_dir: the run folder (created if missing).
    """
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_model_card(summary).save(path)
    logger.info("Wrote the model card to %s", path)
    return path


def _card_data(summary: RunSummary) -> ModelCardData:
    dataset = summary.dataset
    tags = ["image-classification", "timm", "transformers"]
    tags += ["synthetic-data"] if dataset.synthetic else ["flowers-102", "fine-grained"] if dataset.flowers102 else []
    eval_results = _eval_results(summary)
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[dataset.hub_id] if dataset.hub_id else None,
        base_model=summary.base_weights if is_hub_id(summary.base_weights) else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        model_name=_title(summary),
        eval_results=eval_results or None,
    )


def _eval_results(summary: RunSummary) -> list[EvalResult]:
    return evaluation_results(summary.test_metrics, "test", "test", summary.dataset)


def evaluation_results(
    metrics: dict[str, Any],
    prefix: str,
    split: str,
    dataset: DatasetIdentity,
    metric_args: dict[str, dict[str, Any]] | None = None,
) -> list[EvalResult]:
    """The model-index entries of a split's scores: accuracy, top-5, macro F1, mean per-class accuracy and, where
    measured, accuracy with TTA and under corruption.

    Args:
        metrics: ``<prefix>_<metric>`` scores, as in ``test_results.json``; missing ones are left out.
        prefix: the scores' prefix (``test``, ``eval``).
        split: the split's name.
        dataset: the data set scored.
        metric_args: per metric (key suffix, e.g. ``mean_corruption_accuracy``), what it was measured with (the
            TTA views, the corruptions and severities); entries that differ in them are kept apart.
    """
    dataset_type, dataset_name = _dataset_identity(dataset)
    rows = [(suffix, kind, name, args) for suffix, _, kind, name, args in METRICS]
    rows += [(suffix, kind, name, (metric_args or {}).get(suffix)) for suffix, kind, name in LATER_METRICS]
    results = []
    for suffix, metric_type, metric_name, args in rows:
        value = metrics.get(f"{prefix}_{suffix}")
        if value is None:
            continue
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(float(value), 4),
                metric_args=args,
            )
        )
    return results


def add_eval_results(card: ModelCard, results: list[EvalResult], model_name: str) -> ModelCard:
    """``card`` with ``results`` in its model-index: an entry of the same measurement (task, data, split, metric and
    its arguments alike: ``EvalResult.is_equal_except_value``) takes the new value, the others are added.

    Args:
        card: a model card (``ModelCard.load`` of a file or a Hub repo).
        results: the entries, e.g. from :func:`evaluation_results`.
        model_name: the model-index name, where the card has none yet.
    """
    entries = list(card.data.eval_results or [])
    for result in results:
        same = next((entry for entry in entries if result.is_equal_except_value(entry)), None)
        if same is None:
            entries.append(result)
        else:
            same.metric_value = result.metric_value
    card.data.model_name = card.data.model_name or model_name
    card.data.eval_results = entries or None
    card.data.metrics = sorted({*(card.data.metrics or []), *(entry.metric_type for entry in entries)}) or None
    return card


def update_model_card(path: str | Path, results: list[EvalResult]) -> Path:
    """Add ``results`` to the model-index of the card at ``path`` (a run folder's ``README.md``), in place.

    Args:
        path: the card file.
        results: the entries, e.g. from :func:`evaluation_results`.
    """
    path = Path(path)
    add_eval_results(ModelCard.load(path), results, path.parent.name).save(path)
    logger.info("Wrote %d results into the model-index of %s", len(results), path)
    return path


def _dataset_identity(dataset: DatasetIdentity) -> tuple[str, str]:
    # model-index wants a data set "type" (a Hub id where there is one) and a readable name.
    if dataset.synthetic:
        return dataset.source, "Synthetic Flowers-102 stand-in (not real flowers)"
    if dataset.hub_id:
        return dataset.hub_id, dataset.name
    if dataset.flowers102:
        return "oxford_flowers102", "Oxford Flowers-102 (local copy)"
    return dataset.name, f"{dataset.name} (local copy)"


def _title(summary: RunSummary) -> str:
    if summary.hub_model_id:
        return summary.hub_model_id.split("/")[-1]
    data = "synthetic data" if summary.dataset.synthetic else "Flowers-102" if summary.dataset.flowers102 else None
    return f"{summary.architecture} fine-tuned on {data or summary.dataset.name}"


def _template_values(summary: RunSummary) -> dict[str, Any]:
    model_ref = summary.hub_model_id or LOCAL_PLACEHOLDER
    return {
        "title": _title(summary),
        "summary_line": _summary_line(summary),
        "dataset_line": _dataset_line(summary.dataset),
        "synthetic": summary.dataset.synthetic,
        "flowers102": summary.dataset.flowers102,
        "official_split": summary.dataset.official_split,
        "subject": summary.dataset.subject,
        "num_classes": len(summary.class_names),
        "split_sizes": summary.split_sizes,
        "class_names": [_cell(name) for name in summary.class_names],
        "base_weights_line": _base_weights_line(summary.base_weights),
        "stages": [_stage_row(stage) for stage in summary.stages],
        "training": [(key.replace("_", " "), _cell(_format_value(value))) for key, value in _public(summary.training)],
        "preprocessing": summary.preprocessing,
        "crop_text": _crop_text(summary.preprocessing),
        "mean": ", ".join(f"{v:.3f}" for v in summary.preprocessing.mean),
        "std": ", ".join(f"{v:.3f}" for v in summary.preprocessing.std),
        "results": _result_rows(summary.validation_metrics, summary.test_metrics),
        "test_size": summary.split_sizes.get("test", 0),
        "interval": _accuracy_interval(summary.test_metrics.get("test_accuracy"), summary.split_sizes.get("test", 0)),
        "plots": [_plot(name) for name in summary.plots],
        "confusions": [_confusion_row(pair) for pair in summary.confusions],
        "model_ref": model_ref,
        "timm_ref": f"hf-hub:{summary.hub_model_id}" if summary.hub_model_id else f"local-dir:{LOCAL_PLACEHOLDER}",
        "seed_text": f" ({summary.training['seed']})" if summary.training.get("seed") is not None else "",
        "calibration_text": calibration_text(summary.calibration),
    }


def calibration_text(calibration: Calibration | None) -> str:
    """How many images the temperature and the unsure threshold rest on, with their bootstrap intervals where
    those are few (``flowers_hf.evaluation.few_images``); empty for a model without that record."""
    if calibration is None or calibration.num_images is None:
        return ""
    text = (
        f"The temperature (T = {calibration.temperature:.4f}) rests on {calibration.num_images:,} "
        f"{calibration.fitted_on} images"
    )
    if calibration.unsure_threshold is not None:
        text += f", the unsure threshold ({calibration.unsure_threshold:.4f}) on the {calibration.num_correct:,} of "
        text += "them classified correctly"
    fits = (("T", calibration.temperature_interval), ("the threshold", calibration.threshold_interval))
    intervals = [f"{what} in [{bounds[0]:.4f}, {bounds[1]:.4f}]" for what, bounds in fits if bounds is not None]
    if intervals:
        text += f". That is few: {' and '.join(intervals)} (95% bootstrap intervals of the fit)"
    return text + "."


def _summary_line(summary: RunSummary) -> str:
    height, width = summary.preprocessing.input_size
    data = "the synthetic stand-in data set" if summary.dataset.synthetic else summary.dataset.name
    how = "trained from scratch" if summary.base_weights is None else "fine-tuned"
    return (
        f"A timm `{summary.architecture}` image classifier {how} on {data}: "
        f"{len(summary.class_names)} classes, {height}×{width} RGB input."
    )


def _dataset_line(dataset: DatasetIdentity) -> str:
    if dataset.synthetic:
        return "`synthetic` (procedurally drawn offline stand-in, see the warning below)"
    if dataset.hub_id:
        what = "a copy of Oxford Flowers-102 " if dataset.flowers102 else ""
        return f"[{dataset.hub_id}]({dataset.url}), {what}on the Hugging Face Hub"
    what = f"[Oxford Flowers-102]({dataset.url}), " if dataset.flowers102 else ""
    return f"{what}a local copy of the data (`{dataset.source}`)"


def _base_weights_line(base_weights: str | None) -> str:
    if base_weights is None:
        return "none (random initialisation)"
    if is_hub_id(base_weights):
        return f"[{base_weights}](https://huggingface.co/{base_weights})"
    # Only the file name: the folder is a path on the training machine.
    return f"a local checkpoint (`{Path(base_weights).name}`)"


def _stage_row(stage: dict[str, Any]) -> dict[str, str]:
    best = stage.get("best_validation_accuracy")
    return {
        "name": _cell(str(stage.get("name", ""))),
        "epochs": f"{_format_value(stage.get('epochs_run'))} / {_format_value(stage.get('epochs'))}",
        "learning_rate": _format_value(stage.get("learning_rate")),
        "best": percent(best) if best is not None else "—",
    }


def _public(training: dict[str, Any]) -> list[tuple[str, Any]]:
    """Recipe facts fit to publish: no secrets, no absolute paths of the training machine."""
    kept = []
    for key, value in training.items():
        if _SECRET_KEY.search(key) or (isinstance(value, str) and value.startswith(("/", "~"))):
            logger.debug("Left %r out of the model card", key)
            continue
        kept.append((key, value))
    return kept


def _crop_text(preprocessing: Preprocessing) -> str:
    (scale_h, scale_w), (height, width) = preprocessing.scale_size, preprocessing.input_size
    if preprocessing.crop_mode == "squash":
        return f"resize to {scale_h} × {scale_w} (aspect ratio not kept), then centre crop {height} × {width}"
    return f"resize the shorter side to {scale_h}, then centre crop {height} × {width}"


def _result_rows(validation: dict[str, float], test: dict[str, float]) -> list[dict[str, str]]:
    rows = []
    for suffix, label, *_ in METRICS:
        rows.append(_result_row(label, validation.get(f"eval_{suffix}"), test.get(f"test_{suffix}"), percent))
    rows.append(_result_row("Loss", validation.get("eval_loss"), test.get("test_loss"), lambda v: f"{v:.4f}"))
    ece = (validation.get("eval_ece_calibrated"), test.get("test_ece_calibrated"))
    rows.append(_result_row("Calibration error (ECE, after temperature scaling)", *ece, lambda v: f"{v:.4f}"))
    return [row for row in rows if row is not None]


def _result_row(label: str, validation: float | None, test: float | None, fmt: Any) -> dict[str, str] | None:
    if validation is None and test is None:
        return None
    return {
        "label": label,
        "validation": fmt(validation) if validation is not None else "—",
        "test": fmt(test) if test is not None else "—",
    }


def _accuracy_interval(accuracy: float | None, n: int) -> str | None:
    if accuracy is None or n <= 0:
        return None
    return f"{100 * 1.96 * math.sqrt(accuracy * (1 - accuracy) / n):.2f}"


def _plot(name: str) -> dict[str, str]:
    path = Path(name)
    # Links are relative to the run folder; an absolute path would point into the training machine.
    link = path.name if path.is_absolute() else path.as_posix()
    return {"alt": path.stem.replace("_", " ").capitalize(), "path": link}


def _confusion_row(pair: dict[str, Any]) -> dict[str, str]:
    return {
        "true": _cell(pair["true"]),
        "predicted": _cell(pair["predicted"]),
        "count": str(pair["count"]),
        "share": percent(pair["share_of_true"]),
    }


def percent(value: float) -> str:
    """``0.2662`` as ``26.62%``."""
    return f"{100 * float(value):.2f}%"


def _format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
