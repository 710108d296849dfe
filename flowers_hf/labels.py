"""Flower names: the single source of truth for class names across data sources."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torchvision.datasets import Flowers102

logger = logging.getLogger(__name__)

# The canonical 102 names in the order of the official label ids (imagelabels.mat, 1-based there).
FLOWER_NAMES: tuple[str, ...] = tuple(Flowers102.classes)
NUM_FLOWER_CLASSES = len(FLOWER_NAMES)


def numeric_names_to_flowers(names: Sequence[str]) -> list[str] | None:
    """Map class names that are numbers ('1'…'102' or '0'…'101') to flower names.

    Hub copies and imagefolder trees often name classes by their Oxford id, sometimes in string
    order ('1', '10', '100', …). Returns the flower name for each entry of ``names`` in the same
    order, or ``None`` when the names are not all numbers in the Oxford id range.

    Args:
        names: class names as stored in the data set.
    """
    if not names or not all(str(n).strip().isdigit() for n in names):
        return None
    ids = [int(n) for n in names]
    offset = 0 if min(ids) == 0 else 1  # '0' present means 0-based ids; the Oxford files are 1-based
    if max(ids) - offset >= NUM_FLOWER_CLASSES or len(set(ids)) != len(ids):
        return None
    return [FLOWER_NAMES[i - offset] for i in ids]
