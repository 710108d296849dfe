"""Local folders: an imagefolder tree, or a folder written by ``DatasetDict.save_to_disk``."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from flowers_hf.core.errors import MissingFileError
from flowers_hf.data.photo_formats import allow_phone_formats

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


def load_folder(path: str | Path, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Load a local folder the way ``datasets.load_dataset`` reads one: an imagefolder tree ``train/<class>/…``
    (optional ``validation/`` or ``valid/``, ``test/``; class names from the folder names; or labels from a
    ``metadata.csv``/``.jsonl``), or a Hub snapshot of parquet shards with its ``README.md`` (its ``configs`` and
    ``dataset_info`` give splits and class names), as ``hf download REPO --repo-type dataset --local-dir DIR``
    writes it.

    Args:
        path: the folder.
        cache_dir: the ``datasets`` cache folder.
    """
    path = Path(path)
    allow_phone_formats()  # .heic, .heif and .avif files are images too
    try:
        loaded = datasets.load_dataset(str(path), cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as error:  # no data files, or none of a format datasets reads
        raise MissingFileError(
            f"{path} is not a data set folder that datasets.load_dataset reads ({error}). Give an imagefolder "
            "tree train/<class>/…, a folder of parquet shards (a Hub snapshot), an Oxford folder or a "
            "save_to_disk folder"
        ) from error
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    logger.info("Loaded %s: %s", path, {k: len(v) for k, v in loaded.items()})
    return loaded
