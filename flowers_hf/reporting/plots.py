"""Every figure: confusion matrix, loss and accuracy curves across stages, augmentation samples, the most confident
mistakes, accuracy per class, reliability diagrams, accuracy under corruption and open-set scores.

Built on ``matplotlib.figure.Figure`` rather than ``pyplot``: no global figure registry, no backend to select,
nothing left open after a figure is saved (PNG output goes through Agg).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image
from sklearn.metrics import confusion_matrix

from flowers_hf.data.images import to_rgb
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import build_eval_transform, denormalize
from flowers_hf.evaluation.calibration import NUM_BINS, ReliabilityBins, probabilities, reliability_bins
from flowers_hf.evaluation.corruptions import SEVERITIES
from flowers_hf.evaluation.mistakes import Mistake, worst_first
from flowers_hf.serving.open_set import SCORE_NAMES

logger = logging.getLogger(__name__)

History = Sequence[dict[str, Any]]

DPI = 110
_INCHES_PER_CLASS = 0.18
_MIN_MATRIX_INCHES = 6.0
_MAX_MATRIX_INCHES = 24.0
_ANNOTATE_MAX_CLASSES = 15
_THUMBNAIL_PIXELS = 256
_CELL_INCHES = 1.6


def normalized_confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix with each row divided by its total: the recall of each true class; empty rows stay zero.

    Args:
        labels: true class ids.
        predictions: predicted class ids, same length.
        num_classes: size of the matrix; ids outside ``range(num_classes)`` are not counted.
    """
    counts = confusion_matrix(labels, predictions, labels=np.arange(num_classes)).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, class_names: list[str], path: str | Path
) -> None:
    """Save the row-normalised confusion matrix (recall per true class) as an image titled with the accuracy.

    Args:
        labels: true class ids.
        predictions: predicted class ids, same length.
        class_names: name of each class id, in id order.
        path: image file to write (format from the suffix, e.g. ``.png``).
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    num_classes = len(class_names)
    matrix = normalized_confusion_matrix(labels, predictions, num_classes)
    side = float(np.clip(_INCHES_PER_CLASS * num_classes, _MIN_MATRIX_INCHES, _MAX_MATRIX_INCHES))
    # Type about 60 % as tall as the space per class: neighbouring tick labels do not overlap (above the 3-pt floor).
    fontsize = float(np.clip(side / num_classes * 72 * 0.6, 3, 10))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="recall (share of the true class)")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, class_names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.mean(labels == predictions))
    ax.set_title(f"confusion matrix: accuracy {accuracy:.1%} on {labels.size} images")
    if num_classes <= _ANNOTATE_MAX_CLASSES:
        _annotate_cells(ax, matrix, fontsize)
    _save(fig, path)


def _annotate_cells(ax: Axes, matrix: np.ndarray, fontsize: float) -> None:
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > 0.5 else "black"
        ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=fontsize, color=color)


def series(history: History, key: str) -> tuple[list[float], list[float]]:
    """Epochs and values of one logged quantity, from the records that have it.

    Args:
        history: log records like ``trainer.state.log_history``, each with an ``epoch``.
        key: the quantity, e.g. ``loss`` or ``eval_accuracy``.
    """
    records = [record for record in history if key in record and "epoch" in record]
    return [float(record["epoch"]) for record in records], [float(record[key]) for record in records]


def stage_boundaries(history: History) -> list[tuple[float, int]]:
    """Where each later training stage starts: the epoch of the previous stage's last record, and the new stage.

    Args:
        history: log records in logging order, each with ``epoch`` and ``stage``; records lacking either are skipped.
    """
    boundaries: list[tuple[float, int]] = []
    previous: dict[str, Any] | None = None
    for record in history:
        if "epoch" not in record or "stage" not in record:
            continue
        if previous is not None and record["stage"] != previous["stage"]:
            boundaries.append((float(previous["epoch"]), int(record["stage"])))
        previous = record
    return boundaries


def plot_loss_curve(history: History, path: str | Path) -> None:
    """Save training and validation loss against epoch, with a dashed line where each later stage starts.

    Args:
        history: log records (``epoch``, ``stage`` and some of ``loss``, ``eval_loss``), merged across stages.
        path: image file to write.
    """
    fig, ax = _curve_figure(history, {"loss": "train", "eval_loss": "validation"}, "loss")
    if ax.lines:
        ax.set_ylim(bottom=0)
    _save(fig, path)


def plot_accuracy_curve(history: History, path: str | Path) -> None:
    """Save training and validation accuracy against epoch, with a dashed line where each later stage starts.

    Args:
        history: log records (``epoch``, ``stage`` and some of ``train_accuracy``, ``eval_accuracy``).
        path: image file to write.
    """
    fig, ax = _curve_figure(history, {"train_accuracy": "train", "eval_accuracy": "validation"}, "accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    _save(fig, path)


def _curve_figure(history: History, labels: dict[str, str], quantity: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.set_title(f"{quantity} by epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(quantity)
    for key, label in labels.items():
        epochs, values = series(history, key)
        if epochs:
            ax.plot(epochs, values, marker="o", markersize=4, label=label)
    if not ax.lines:
        logger.warning("no %s in the history; writing an empty %s figure", " or ".join(labels), quantity)
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="grey")
        return fig, ax
    for epoch, stage in stage_boundaries(history):
        ax.axvline(epoch, color="grey", linestyle="--", linewidth=1)
        # x in data units, y in axes units: the label sits at the top whatever the data range.
        ax.text(epoch, 0.98, f" stage {stage}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="grey")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig, ax


def plot_augmentation_samples(
    images: list[Image.Image],
    labels: list[int],
    transform: Callable[[Image.Image], torch.Tensor],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    class_names: list[str],
    path: str | Path,
    per_image: int = 4,
) -> None:
    """Save a grid with a row per image: the original, then ``per_image`` draws of the training transform.

    Args:
        images: source images.
        labels: class id of each image.
        transform: ``image -> normalised CHW tensor``, e.g. ``build_train_transform(prep)``.
        mean: normalisation mean of the transform.
        std: normalisation standard deviation of the transform.
        class_names: name of each class id.
        path: image file to write.
        per_image: augmented versions shown per image.
    """
    if not images or len(images) != len(labels):
        raise ValueError(f"need as many labels as images, at least one; got {len(images)} and {len(labels)}")
    columns = 1 + per_image
    fig = Figure(figsize=(columns * _CELL_INCHES, len(images) * (_CELL_INCHES + 0.3)))
    rows = fig.subfigures(len(images), 1, squeeze=False)[:, 0]
    for row, image, label in zip(rows, images, labels, strict=True):
        row.suptitle(f"{class_names[label]} ({label})", fontsize=10)
        axes = row.subplots(1, columns, squeeze=False)[0]
        thumbnail = to_rgb(image).copy()
        thumbnail.thumbnail((_THUMBNAIL_PIXELS, _THUMBNAIL_PIXELS))
        _show(axes[0], np.asarray(thumbnail), "original")
        for index, ax in enumerate(axes[1:], start=1):
            _show(ax, denormalize(transform(image), mean, std), f"augmented {index}")
    _save(fig, path)


def _show(ax: Axes, pixels: np.ndarray, title: str) -> None:
    ax.imshow(pixels)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def plot_top_mistakes(
    images: list[Image.Image], mistakes: list[Mistake], prep: Preprocessing, class_names: list[str], path: str | Path
) -> None:
    """Save a grid of the most confident wrong predictions, each image as the model saw it (the eval transform of
    ``prep``, de-normalised), titled with the true class, the predicted one and its probability.

    Args:
        images: the source image of each mistake, in the same order.
        mistakes: from :func:`flowers_hf.evaluation.mistakes.top_mistakes`, most confident first.
        prep: the model's preprocessing.
        class_names: name of each class id.
        path: image file to write.
    """
    if len(images) != len(mistakes):
        raise ValueError(f"need an image per mistake; got {len(images)} images and {len(mistakes)} mistakes")
    transform, columns = build_eval_transform(prep), 4
    rows = max(1, math.ceil(len(mistakes) / columns))
    fig = Figure(figsize=(columns * (_CELL_INCHES + 0.6), rows * (_CELL_INCHES + 0.9)))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, image, mistake in zip(axes, images, mistakes, strict=False):
        title = (
            f"true: {class_names[mistake.label]}\npredicted: {class_names[mistake.predicted]}\n"
            f"({mistake.probability:.0%})"
        )
        _show(ax, denormalize(transform(image), prep.mean, prep.std), title)
    for ax in axes[len(mistakes) :]:
        ax.set_axis_off()
    if not mistakes:
        axes[0].text(0.5, 0.5, "no mistakes", transform=axes[0].transAxes, ha="center", va="center", color="grey")
    fig.suptitle(f"the {len(mistakes)} most confident mistakes (probability of the predicted class)")
    _save(fig, path)


def plot_per_class_accuracy(accuracy: np.ndarray, class_names: list[str], path: str | Path, named: int = 10) -> None:
    """Save every class's accuracy, worst first, beside the ``named`` worst classes by name with their accuracy;
    classes without images are left out.

    Args:
        accuracy: per class id, from :func:`flowers_hf.evaluation.mistakes.per_class_accuracy` (NaN: no image).
        class_names: name of each class id.
        path: image file to write.
        named: how many of the worst classes are named.
    """
    order = worst_first(accuracy)
    worst = order[:named]
    fig = Figure(figsize=(12, max(3.5, 0.3 * len(worst) + 1.2)))
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    left.barh(np.arange(len(worst)), accuracy[worst], color="tab:red")
    left.set_yticks(np.arange(len(worst)), [class_names[i] for i in worst], fontsize=8)
    left.invert_yaxis()  # the worst on top
    for row, value in enumerate(accuracy[worst]):
        left.text(value, row, f" {value:.0%}", va="center", fontsize=8)
    left.set_xlim(0, 1.15)
    left.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    left.set_title(f"the {len(worst)} worst classes", fontsize=10)
    colours = ["tab:red"] * len(worst) + ["tab:blue"] * (len(order) - len(worst))
    right.bar(np.arange(len(order)), accuracy[order], width=0.85, color=colours)
    mean = float(np.mean(accuracy[order])) if len(order) else float("nan")
    right.axhline(mean, color="grey", linestyle="--", linewidth=1, label=f"mean per-class accuracy {mean:.1%}")
    right.set_ylim(0, 1.02)
    right.set_xticks([])
    right.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    right.set_xlabel(f"all {len(order)} classes, worst first")
    right.set_title("accuracy (recall) of each class", fontsize=10)
    right.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_reliability_diagram(
    logits: np.ndarray, labels: np.ndarray, temperature: float, path: str | Path, num_bins: int = NUM_BINS
) -> None:
    """Save reliability diagrams before and after temperature scaling, side by side, each titled with its ECE.

    Args:
        logits: uncalibrated class scores, shape (n, classes).
        labels: true class ids, shape (n,).
        temperature: the calibration temperature.
        path: image file to write.
        num_bins: confidence bins.
    """
    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("uncalibrated", 1.0), (f"temperature scaled (T = {temperature:.3g})", temperature))
    for ax, (title, t) in zip(axes, panels, strict=True):
        _reliability_panel(ax, reliability_bins(probabilities(logits, t), labels, num_bins), title)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(f"reliability on {len(labels):,} images ({num_bins} bins; images per bin at the foot of its bar)")
    _save(fig, path)


def _reliability_panel(ax: Any, bins: ReliabilityBins, title: str) -> None:
    width = bins.edges[1] - bins.edges[0]
    centres = (bins.edges[:-1] + width / 2)[bins.counts > 0]
    accuracy, confidence = bins.accuracy[bins.counts > 0], bins.confidence[bins.counts > 0]
    ax.bar(centres, accuracy, width=width, color="tab:blue", alpha=0.8, edgecolor="black", label="accuracy")
    # A calibrated bin's accuracy reaches the top of its red outline (its mean top-1 probability).
    ax.bar(centres, confidence, width=width, fill=False, edgecolor="red", linewidth=1.5, label="mean top-1 probability")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for x, count in zip(centres, bins.counts[bins.counts > 0], strict=True):
        ax.text(x, 0.01, str(count), ha="center", va="bottom", fontsize=6, rotation=90, color="white")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-1 probability")
    ax.set_title(f"{title}: ECE {bins.ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)


def plot_robustness(summary: dict[str, Any], path: str | Path, columns: int = 4) -> None:
    """Save accuracy against severity, a panel per corruption, with clean accuracy as a dashed line.

    Args:
        summary: the output of :func:`robustness_summary`.
        path: image file to write.
        columns: panels per row.
    """
    names = list(summary["corruptions"])
    rows = math.ceil(len(names) / columns)
    fig = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    clean = summary["clean_accuracy"]
    top = max([clean, *(a for c in summary["corruptions"].values() for a in c["accuracy"].values())])
    for ax, name in zip(axes, names, strict=False):
        entry = summary["corruptions"][name]
        severities = [int(s) for s in entry["accuracy"]]
        ax.plot(severities, list(entry["accuracy"].values()), marker="o", markersize=4)
        ax.axhline(clean, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{name} (mean {entry['mean_accuracy']:.1%})", fontsize=9)
        ax.set_xticks(SEVERITIES)
        ax.set_ylim(0, min(1.0, top * 1.1) or 1.0)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    fig.supxlabel("severity")
    fig.supylabel("accuracy")
    fig.suptitle(
        f"accuracy under corruption: clean {clean:.1%} (dashed), "
        f"mean over corruptions and severities {summary['mean_corruption_accuracy']:.1%}"
    )
    _save(fig, path)


def plot_ood_scores(pairs: dict[str, tuple[np.ndarray, np.ndarray]], report: dict[str, Any], path: str | Path) -> None:
    """Save, a panel per score, the distributions of the known and the unknown images' scores with the threshold
    chosen on validation, each titled with its AUROC and FPR at 95 % TPR.

    Args:
        pairs: ``{score: (known scores, unknown scores)}`` (:func:`flowers_hf.evaluation.ood.score_pairs`).
        report: the ``ood.json`` of the same scores (:func:`flowers_hf.evaluation.ood.open_set_report`).
        path: image file to write.
    """
    fig = Figure(figsize=(4.2 * len(pairs), 3.8), layout="constrained")  # room for the titles above the panels
    for ax, (name, (known, unknown)) in zip(fig.subplots(1, len(pairs), squeeze=False)[0], pairs.items(), strict=True):
        entry = report["scores"][name]
        bins = np.histogram_bin_edges(np.r_[known, unknown], bins=40)
        ax.hist(known, bins=bins, density=True, alpha=0.6, color="tab:blue", label=f"known ({len(known):,})")
        ax.hist(unknown, bins=bins, density=True, alpha=0.6, color="tab:red", label=f"unknown ({len(unknown):,})")
        if entry["threshold"] is not None:
            ax.axvline(entry["threshold"], color="black", linestyle="--", linewidth=1, label="validation threshold")
        ax.set_title(f"{SCORE_NAMES[name]}\nAUROC {entry['auroc']:.3f}, FPR at 95% TPR {entry['fpr_at_95_tpr']:.1%}",
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("score (higher: more like a known class)", fontsize=8)
        ax.set_yticks([])
        ax.legend(fontsize=7)
    fig.suptitle(f"known classes against {report['ood_source']}", fontsize=10)
    _save(fig, path)


def _save(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    # A Figure made without pyplot is freed once unreferenced; clearing it breaks the artists' reference
    # cycles, so the memory (large for a 102-class matrix) goes back now rather than at the next GC pass.
    fig.clear()
    logger.info("wrote %s", path)
