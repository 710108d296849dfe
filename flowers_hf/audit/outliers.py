"""Images far from every class (cleanlab's out-of-distribution score on the features: the mean distance to their
nearest neighbours, mapped to (0, 1], low = atypical), and the image-level checks: images that cannot be decoded
(``flowers_hf.data.validate``, reused), odd modes, tiny sides and extreme aspect ratios."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from cleanlab.outlier import OutOfDistribution

from flowers_hf.audit.catalog import Catalog

PLAIN_MODES = ("RGB", "L")  # what photos are; the others decode (validate.py) but are worth a look


def outlier_scores(features: np.ndarray) -> np.ndarray:
    """cleanlab's score per image, in (0, 1]: the lower, the farther from the rest."""
    k = min(10, len(features) - 1)  # cleanlab's default k, for data sets smaller than it
    return OutOfDistribution(params={"k": k}).fit_score(features=features)


def outliers(cat: Catalog, scores: np.ndarray, share: float) -> list[dict[str, Any]]:
    """The ``share`` of images with the lowest scores, lowest first: ``{"split", "index", "file", "label",
    "outlier_score"}``."""
    count = math.ceil(share * len(scores)) if share else 0
    return [
        {**cat.item(int(row)), "label": cat.class_names[cat.label[row]], "outlier_score": round(float(scores[row]), 6)}
        for row in np.argsort(scores, kind="stable")[:count]
    ]


def image_checks(cat: Catalog, min_side: int, max_aspect: float) -> list[dict[str, Any]]:
    """Images that decode but are odd: a mode other than RGB or L, a shorter side below ``min_side``, or one side
    more than ``max_aspect`` times the other."""
    found = []
    for row in range(len(cat)):
        width, height = int(cat.width[row]), int(cat.height[row])
        reasons = []
        if cat.mode[row] not in PLAIN_MODES:
            reasons.append(f"mode {cat.mode[row]}")
        if min(width, height) < min_side:
            reasons.append(f"shorter side {min(width, height)} px < {min_side}")
        if max(width, height) > max_aspect * max(min(width, height), 1):
            reasons.append(f"aspect ratio {max(width, height) / max(min(width, height), 1):.1f} > {max_aspect:g}")
        if reasons:
            found.append({**cat.item(row), "size": [width, height], "reason": "; ".join(reasons)})
    return found
