"""Class balance and image statistics: counts per class and split, sizes and aspect ratios."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowers_hf.audit.catalog import Catalog


def image_statistics(cat: Catalog) -> dict[str, Any]:
    """Per split: images, per-class counts (class id order), and the min / median / max of width, height and aspect
    ratio (longer side over shorter)."""
    splits = {}
    for name in dict.fromkeys(cat.split.tolist()):
        rows = cat.split == name
        width, height = cat.width[rows], cat.height[rows]
        aspect = np.maximum(width, height) / np.maximum(np.minimum(width, height), 1)
        splits[name] = {
            "images": int(rows.sum()),
            "class_counts": np.bincount(cat.label[rows], minlength=len(cat.class_names)).tolist(),
            "width": _spread(width),
            "height": _spread(height),
            "aspect_ratio": _spread(aspect),
            "modes": dict(zip(*np.unique(np.array(cat.mode)[rows], return_counts=True), strict=True)),
        }
    for values in splits.values():
        values["modes"] = {str(mode): int(n) for mode, n in values["modes"].items()}
    return {"class_names": cat.class_names, "splits": splits}


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
