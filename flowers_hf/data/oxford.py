"""The original Oxford Flowers-102 distribution in a local folder.

Expected layout (as downloaded from the VGG site)::

    FOLDER/imagelabels.mat    key 'labels': 1-based class of image id 1…8189
    FOLDER/setid.mat          keys 'trnid', 'valid', 'tstid': 1-based image ids of each split
    FOLDER/jpg/image_00001.jpg …   or the unextracted FOLDER/102flowers.tgz
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import datasets
import numpy as np
import scipy.io
from tqdm.auto import tqdm

from flowers_hf.core.errors import DataError, MissingFileError
from flowers_hf.data.labels import FLOWER_NAMES

logger = logging.getLogger(__name__)

LABELS_FILE = "imagelabels.mat"
SPLITS_FILE = "setid.mat"
IMAGES_DIR = "jpg"
ARCHIVE = "102flowers.tgz"
# setid.mat key of each split: the official 1,020 / 1,020 / 6,149 split.
SPLIT_KEYS = {"train": "trnid", "validation": "valid", "test": "tstid"}


def is_oxford_folder(path: Path) -> bool:
    """Whether ``path`` holds the Oxford label and split files."""
    return (path / LABELS_FILE).is_file() and (path / SPLITS_FILE).is_file()


def load_oxford(path: str | Path, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Read the Oxford distribution: official split, labels made 0-based, flower names.

    Args:
        path: the folder with ``imagelabels.mat``, ``setid.mat`` and ``jpg/`` or ``102flowers.tgz``.
        cache_dir: where to extract the archive (default: a ``flowers_hf`` folder in the ``datasets`` cache).
    """
    path = Path(path)
    labels = _read_mat_vector(path / LABELS_FILE, "labels")
    if labels.min() < 1 or labels.max() > len(FLOWER_NAMES):
        raise DataError(
            f"{path / LABELS_FILE}: labels must be 1-based class ids in 1..{len(FLOWER_NAMES)}, "
            f"found {labels.min()}..{labels.max()}"
        )
    image_dir = _image_dir(path, cache_dir)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FLOWER_NAMES))})
    splits = {}
    for split, key in SPLIT_KEYS.items():
        ids = _read_mat_vector(path / SPLITS_FILE, key)
        if ids.min() < 1 or ids.max() > len(labels):
            raise DataError(
                f"{path / SPLITS_FILE}: '{key}' holds image ids outside 1..{len(labels)} "
                f"(the number of labels in {LABELS_FILE})"
            )
        files = [image_dir / f"image_{i:05d}.jpg" for i in ids]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise MissingFileError(
                f"{len(missing)} image(s) of the '{split}' split are missing from {image_dir}, "
                f"for example {', '.join(missing[:5])}"
            )
        rows = {"image": [str(f) for f in files], "label": (labels[ids - 1] - 1).tolist()}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
    logger.info("Oxford Flowers-102 from %s: %s", path, {k: len(v) for k, v in splits.items()})
    return datasets.DatasetDict(splits)


def _read_mat_vector(file: Path, key: str) -> np.ndarray:
    contents = scipy.io.loadmat(file)
    if key not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{file} has no key '{key}' (found {found}); is this the Oxford Flowers-102 file?")
    return np.asarray(contents[key]).astype(np.int64).ravel()


def _image_dir(path: Path, cache_dir: str | None) -> Path:
    if (path / IMAGES_DIR).is_dir():
        return path / IMAGES_DIR
    archive = path / ARCHIVE
    if not archive.is_file():
        raise MissingFileError(f"{path} has neither a '{IMAGES_DIR}/' folder nor '{ARCHIVE}'")
    return _extract_once(archive, cache_dir) / IMAGES_DIR


def _extract_once(archive: Path, cache_dir: str | None) -> Path:
    """Extract the archive into the cache, once: a later call with the same file finds it there."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "flowers_hf" / f"oxford-{key}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Extract beside the target and rename at the end, so that an interrupted run leaves no half folder.
    partial = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=root.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for member in tqdm(members, desc=f"Extracting {archive.name}", unit="file"):
                tar.extract(member, partial, filter="data")
        os.replace(partial, root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("Extracted %s into %s", archive, root)
    return root
