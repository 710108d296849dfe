"""Galleries people look at rather than read: leaks side by side, label issues with given -> suggested, outliers,
and the class balance per split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from flowers_hf.data.images import to_rgb

_CELL_INCHES = 1.8
_THUMBNAIL = 160


def _thumbnail(data: datasets.DatasetDict, item: dict[str, Any]) -> np.ndarray:
    image = to_rgb(data[item["split"]][item["index"]]["image"])
    image.thumbnail((_THUMBNAIL, _THUMBNAIL), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _where(item: dict[str, Any]) -> str:
    return f"{item['split']}/{item['file'] or '#' + str(item['index'])}"[-28:]


def plot_gallery(cells: list[tuple[list[np.ndarray], str]], title: str, path: Path, columns: int = 4) -> None:
    """A grid of cells, each one image or a pair side by side with its caption; ``nothing found`` when empty."""
    per_cell = max((len(images) for images, _ in cells), default=1)
    rows = max(1, math.ceil(len(cells) / columns))
    fig = Figure(figsize=(columns * per_cell * _CELL_INCHES, rows * (_CELL_INCHES + 0.7)))
    axes = fig.subplots(rows, columns * per_cell, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for n, (images, caption) in enumerate(cells):
        row, column = divmod(n, columns)
        for k, pixels in enumerate(images):
            ax = axes[row, column * per_cell + k]
            ax.imshow(pixels)
        axes[row, column * per_cell].set_title(caption, fontsize=7, loc="left")
    if not cells:
        axes[0, 0].text(0.5, 0.5, "nothing found", transform=axes[0, 0].transAxes, ha="center", color="grey")
    fig.suptitle(title)
    fig.savefig(path, dpi=80, bbox_inches="tight")


def write_galleries(data: datasets.DatasetDict, findings: dict[str, Any], output_dir: Path, size: int) -> list[str]:
    """``leaks.png``, ``label_issues.png`` and ``outliers.png`` of the first ``size`` findings of each; their names."""
    leaks = [
        ([_thumbnail(data, p["a"]), _thumbnail(data, p["b"])],
         f"{p['kind']}: {_where(p['a'])}\n= {_where(p['b'])}\n{p['hash_distance']} bits, cos {p['cosine']:.3f}, "
         f"aligned {p['alignment']:.3f}")
        for p in findings["leaks"][:size]
    ]  # fmt: skip
    labels = [
        ([_thumbnail(data, f)], f"{_where(f)}\n{f['given']} -> {f['suggested']}\nquality {f['label_quality']:.2f}")
        for f in findings["label_issues"][:size]
    ]
    outliers = [
        ([_thumbnail(data, f)], f"{_where(f)}\n{f['label']}\nscore {f['outlier_score']:.3f}")
        for f in findings["outliers"][:size]
    ]
    plot_gallery(leaks, f"leaks: train copies in validation/test ({len(findings['leaks'])})", output_dir / "leaks.png",
                 columns=2)  # fmt: skip
    plot_gallery(labels, "likely label errors: given -> suggested", output_dir / "label_issues.png")
    plot_gallery(outliers, "outliers: farthest from every class", output_dir / "outliers.png")
    return ["leaks.png", "label_issues.png", "outliers.png"]


def plot_balance(statistics: dict[str, Any], path: Path) -> None:
    """Images per class, a bar per split (stacked), and the aspect ratios' spread per split."""
    names = statistics["class_names"]
    fig = Figure(figsize=(max(6.0, 0.12 * len(names) + 3), 3.5))
    ax = fig.subplots()
    bottom = np.zeros(len(names))
    for split, values in statistics["splits"].items():
        counts = np.array(values["class_counts"])
        ax.bar(range(len(names)), counts, bottom=bottom, label=f"{split} ({values['images']:,})")
        bottom += counts
    ax.set_xlabel("class id")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("class balance per split")
    fig.savefig(path, dpi=80, bbox_inches="tight")
