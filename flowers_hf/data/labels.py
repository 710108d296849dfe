"""Class names: the Flowers-102 names (the single source of truth across its sources), and the check that a data set
names a model's classes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torchvision.datasets import Flowers102

from flowers_hf.core.errors import ClassMismatchError, DataError

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


def canonical_flower_names(names: Sequence[str]) -> list[str]:
    """The Flowers-102 names of a copy's classes, with spellings that differ from torchvision's
    ``Flowers102.classes`` only by case, spacing or quotes made canonical; numeric names ('1'…'102' or
    '0'…'101', see :func:`numeric_names_to_flowers`) become flower names. Case, spacing, hyphens, quotes and a
    question mark do not count as differences.

    Args:
        names: class names as a Flowers-102 copy stores them.

    Raises:
        DataError: when a name is none of the 102 (another data set, or a misspelling to fix at the source).
    """
    numeric = numeric_names_to_flowers(names)
    if numeric is not None:
        return numeric
    unknown = [name for name in names if _plain(name) not in _CANONICAL]
    if unknown:
        raise DataError(
            f"{len(unknown)} class name(s) of this Flowers-102 source are not Flowers-102 names, for example "
            f"{_few(unknown)}. If it is another data set, leave --class_names at 'auto'"
        )
    return [_CANONICAL[_plain(name)] for name in names]


def _plain(name: str) -> str:
    # Case, spacing (hyphens and underscores count as spaces), quotes and torchvision's one "?" ("pink-yellow
    # dahlia?") are how copies of the same names differ.
    text = str(name).lower().translate(str.maketrans("-_", "  ", "'\"`?"))
    return " ".join(text.split())


_CANONICAL = {_plain(name): name for name in FLOWER_NAMES}


def check_class_names(data_names: list[str], model_names: list[str]) -> None:
    """Refuse a data set whose class ids do not name the model's classes.

    Args:
        data_names: the data set's class names, in label id order.
        model_names: the model's, in output order.
    """
    if list(data_names) == list(model_names):
        return
    if sorted(data_names) == sorted(model_names):
        raise ClassMismatchError(
            "the data set has the model's classes in another order, so label ids would not match the model's outputs"
        )
    missing, extra = sorted(set(model_names) - set(data_names)), sorted(set(data_names) - set(model_names))
    differences = [f"the data lacks {_few(missing)}"] if missing else []
    differences += [f"the model lacks {_few(extra)}"] if extra else []
    raise ClassMismatchError(
        f"the data set's {len(data_names)} classes are not the model's {len(model_names)} "
        f"({'; '.join(differences)}). Evaluate on the data the model was trained for (--dataset; "
        "for the synthetic set the same --synthetic_num_classes)"
    )


def _few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(name) for name in names[:shown]) + more
