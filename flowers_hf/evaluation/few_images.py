"""How far to trust a value fitted on few validation images (the temperature, the unsure and open-set thresholds): a
seeded bootstrap interval, and a warning with the count and the interval below :data:`FEW_IMAGES`.

A threshold that keeps 95 % of the correct images is set by the lowest 5 % of them: below 200 images that tail holds
fewer than 10, and one image more or less there moves the threshold visibly (the colour example fitted T = 0.06 on
20 images). Above the cutoff the interval is not computed: nothing is said, and nothing is spent on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

FEW_IMAGES = 200  # fitted on fewer images than this: warn, with the bootstrap interval
RESAMPLES = 200
CONFIDENCE = 0.95


def bootstrap_interval(
    fit: Callable[[np.ndarray], np.ndarray], count: int, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float] | None:
    """The percentile bootstrap interval (``CONFIDENCE``, 95 %) of a value fitted on ``count`` images.

    Args:
        fit: fits the value on each resample: given the image indices of every resample, shape (resamples,
            count), drawn with replacement, it returns one value per resample (``None`` or NaN: it cannot be).
        count: the number of images the value was fitted on.
        seed: the resampling's seed (the same interval every run).
        resamples: how many resamples.
    Returns:
        ``(low, high)``, or ``None`` when no resample could be fitted.
    """
    rows = np.random.default_rng(seed).integers(0, count, (resamples, count))
    values = np.asarray([np.nan if value is None else value for value in fit(rows)], dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def interval_if_few(
    what: str, value: float | None, count: int, fit: Callable[[np.ndarray], np.ndarray], images: str
) -> list[float] | None:
    """Below :data:`FEW_IMAGES`, warn that ``value`` rests on ``count`` images, with its bootstrap interval; return
    the interval as ``[low, high]`` (``None`` from that many images on, or without a value).

    Args:
        what: the value's name in the warning ("the temperature T").
        value: the value fitted on all ``count`` images.
        count: how many images it rests on.
        fit: see :func:`bootstrap_interval`.
        images: what the images are ("validation images", "correctly classified validation images").
    """
    if value is None or count >= FEW_IMAGES or count == 0:
        return None
    interval = bootstrap_interval(fit, count)
    if interval is None:
        return None
    logger.warning(
        "%s = %.4f rests on %d %s only (fewer than %d): its %.0f%% bootstrap interval is [%.4f, %.4f]. More "
        "validation images would pin it down (--validation_fraction, or a larger validation split).",
        what[0].upper() + what[1:], value, count, images, FEW_IMAGES, 100 * CONFIDENCE, *interval,
    )  # fmt: skip
    return [round(bound, 6) for bound in interval]
