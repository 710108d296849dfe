"""Local folders: an imagefolder tree, or a folder written by ``DatasetDict.save_to_disk``."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from flowers_hf.errors import MissingFileError

logger = logging.getLogger(__name__)


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` was written by ``DatasetDict.save_to_disk`` (or ``Dataset.save_to_disk``)."""
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()


def load_saved(path: str | Path) -> datasets.DatasetDict:
    """Load a folder written by ``save_to_disk``; a single saved ``Dataset`` becomes the train split."""
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    logger.info("Loaded saved data set %s: %s", path, {k: len(v) for k, v in loaded.items()})
    return loaded


def load_imagefolder(path: str | Path, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Load ``train/<class>/…`` with optional ``validation/`` (or ``valid/``, ``val/``) and ``test/``.

    Class names are the folder names, the same across splits.

    Args:
        path: the root of the tree.
        cache_dir: the ``datasets`` cache folder.
    """
    path = Path(path)
    if not (path / "train").is_dir():
        raise MissingFileError(f"{path} is not an imagefolder tree: it has no train/<class>/ folders")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
    logger.info("Loaded imagefolder %s: %s", path, {k: len(v) for k, v in loaded.items()})
    return loaded
