"""The model card (``README.md``) of a trained run folder, written through ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from flowers_hf.data.load import SYNTHETIC
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.hub import is_hub_id

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
        dataset: the data source string: a Hub data set id, ``synthetic``, or a local path.
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
    """

    architecture: str
    base_weights: str | None
    dataset: str
    split_sizes: dict[str, int]
    class_names: list[str]
    preprocessing: Preprocessing
    stages: list[dict[str, Any]]
    training: dict[str, Any]
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    hub_model_id: str | None = None
    plots: list[str] = field(default_factory=list)


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
    hub_dataset = is_hub_id(summary.dataset)
    tags = ["image-classification", "timm", "transformers", "fine-grained"]
    tags.append("synthetic-data" if summary.dataset == SYNTHETIC else "flowers-102")
    eval_results = _eval_results(summary)
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[summary.dataset] if hub_dataset else None,
        base_model=summary.base_weights if is_hub_id(summary.base_weights) else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        model_name=_title(summary),
        eval_results=eval_results or None,
    )


def _eval_results(summary: RunSummary) -> list[EvalResult]:
    dataset_type, dataset_name = _dataset_identity(summary.dataset)
    results = []
    for suffix, _, metric_type, metric_name, metric_args in METRICS:
        value = summary.test_metrics.get(f"test_{suffix}")
        if value is None:
            continue
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split="test",
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(float(value), 4),
                metric_args=metric_args,
            )
        )
    return results


def _dataset_identity(dataset: str) -> tuple[str, str]:
    # model-index wants a data set "type" (a Hub id where there is one) and a readable name.
    if dataset == SYNTHETIC:
        return SYNTHETIC, "Synthetic Flowers-102 stand-in (not real flowers)"
    if is_hub_id(dataset):
        return dataset, "Oxford Flowers-102"
    return "oxford_flowers102", "Oxford Flowers-102 (local copy)"


def _title(summary: RunSummary) -> str:
    if summary.hub_model_id:
        return summary.hub_model_id.split("/")[-1]
    return f"{summary.architecture} fine-tuned on {'synthetic data' if summary.dataset == SYNTHETIC else 'Flowers-102'}"


def _template_values(summary: RunSummary) -> dict[str, Any]:
    model_ref = summary.hub_model_id or LOCAL_PLACEHOLDER
    return {
        "title": _title(summary),
        "summary_line": _summary_line(summary),
        "dataset_line": _dataset_line(summary.dataset),
        "synthetic": summary.dataset == SYNTHETIC,
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
        "model_ref": model_ref,
        "timm_ref": f"hf-hub:{summary.hub_model_id}" if summary.hub_model_id else f"local-dir:{LOCAL_PLACEHOLDER}",
        "seed_text": f" ({summary.training['seed']})" if summary.training.get("seed") is not None else "",
    }


def _summary_line(summary: RunSummary) -> str:
    height, width = summary.preprocessing.input_size
    data = "the synthetic stand-in data set" if summary.dataset == SYNTHETIC else "Oxford Flowers-102"
    how = "trained from scratch" if summary.base_weights is None else "fine-tuned"
    return (
        f"A timm `{summary.architecture}` image classifier {how} on {data}: "
        f"{len(summary.class_names)} classes, {height}×{width} RGB input."
    )


def _dataset_line(dataset: str) -> str:
    if dataset == SYNTHETIC:
        return "`synthetic` (procedurally drawn offline stand-in, see the warning below)"
    if is_hub_id(dataset):
        return f"[{dataset}](https://huggingface.co/datasets/{dataset}) on the Hugging Face Hub"
    return f"a local copy of the data (`{dataset}`)"


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
        "best": _percent(best) if best is not None else "—",
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
        rows.append(_result_row(label, validation.get(f"eval_{suffix}"), test.get(f"test_{suffix}"), _percent))
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


def _percent(value: float) -> str:
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
