"""Images only, for the places that need pictures but no labels (``python -m flowers_hf.evaluate --ood``): any source
``--dataset`` takes, a folder of images in any layout, a list of files, or a glob. Labels and class names are ignored;
the images are checked as training data is (``flowers_hf.data.validate``): one that cannot be decoded is listed and
left out.

    synthetic_ood, beans, a saved or Oxford folder, parquet shards   its test split (every split if it has none)
    photos/                       every image under it, at any depth; only test/ where it has a test/ folder
    photos/list.txt               one path per line (relative to the list's folder; blank lines and # comments skipped)
    'photos/**/*.jpg'             a glob (** for any depth)
    a.jpg,b.png,more/             several of these, comma-separated
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
from collections import Counter
from pathlib import Path

import datasets
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from flowers_hf.core.errors import DataError, MissingFileError
from flowers_hf.data.arguments import PINNED_REVISIONS, DataArguments
from flowers_hf.data.folder import is_saved_dataset
from flowers_hf.data.identity import SYNTHETIC, SYNTHETIC_OOD, is_hub_dataset_id
from flowers_hf.data.load import load_raw
from flowers_hf.data.oxford import is_oxford_folder
from flowers_hf.data.photo_formats import allow_phone_formats
from flowers_hf.data.standardize import image_column, split_name
from flowers_hf.data.validate import drop_bad_images

logger = logging.getLogger(__name__)

LIST_SUFFIX = ".txt"
_GLOB = re.compile(r"[*?\[]")
_DATA_FILES = (".parquet", ".arrow")  # a folder of these (a Hub snapshot) is a data set, not a folder of images


def load_image_set(source: str, args: DataArguments, name: str = "unknown") -> datasets.Dataset:
    """The images ``source`` names, as one split with an ``image`` column (``datasets.Image``), the undecodable ones
    left out (counted and listed in the log).

    Args:
        source: a data set (as ``--dataset`` takes it), a folder, a list of files (``.txt``), a glob, or several
            comma-separated; see the module's docstring.
        args: the data options of the in-distribution data (the synthetic sets' size and seed and the cache apply).
        name: what the images are, for the log ("the unknown images").
    """
    images = _data_set_images(source, args) if is_data_set(source) else _files_as_dataset(image_files(source))
    logger.info("%s: %s images from %s", name, f"{len(images):,}", source)
    return drop_bad_images(datasets.DatasetDict({name: images}), "skip")[name]


def is_data_set(source: str) -> bool:
    """Whether ``source`` is a data set (read as ``--dataset`` reads it) rather than image files."""
    path = Path(source).expanduser()
    if source in (SYNTHETIC, SYNTHETIC_OOD):
        return True
    if path.is_dir():
        if is_saved_dataset(path) or is_oxford_folder(path):
            return True
        files = _files_under(path)
        return not any(_is_image(f) for f in files) and any(f.suffix.lower() in _DATA_FILES for f in files)
    return not path.exists() and not _GLOB.search(source) and "," not in source and is_hub_dataset_id(source)


def image_files(source: str) -> list[Path]:
    """The image files a folder, list of files, glob, single file, or comma-separated several of them name.

    Raises:
        MissingFileError: a part names nothing that exists.
        DataError: it names no image file (the message says what it found instead).
    """
    if "," in source and not Path(source).expanduser().exists():
        return [file for part in source.split(",") if part.strip() for file in image_files(part.strip())]
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder_images(path)
    if path.is_file():
        return _listed(path) if path.suffix.lower() == LIST_SUFFIX else [path]
    if _GLOB.search(source):
        return _globbed(source)
    raise MissingFileError(
        f"'{source}' is not a folder, an image file, a list of files ({LIST_SUFFIX}), a glob or a data set"
    )


def _folder_images(folder: Path) -> list[Path]:
    # An imagefolder tree with a test split: its test images, as --dataset would read that split.
    test = next((child for child in folder.iterdir() if child.is_dir() and split_name(child.name) == "test"), None)
    root = test or folder
    files = _files_under(root)
    images = [file for file in files if _is_image(file)]
    if not images:
        raise DataError(f"no image files in {root}: {_found(files)}")
    return images


def _listed(listing: Path) -> list[Path]:
    lines = [line.strip() for line in listing.read_text().splitlines()]
    paths = [(listing.parent / Path(line).expanduser()) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise DataError(f"no image files in {listing}: it names no file (one path a line)")
    # Named one by one: each is taken (a missing or broken one is then listed by the image check), folders opened.
    return [file for path in paths for file in (_folder_images(path) if path.is_dir() else [path])]


def _globbed(pattern: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser()), recursive=True) if Path(p).is_file())
    images = [file for file in files if _is_image(file)]
    if not images:
        raise DataError(f"no image files match {pattern}: {_found(files)}")
    return images


def _files_under(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, but hidden ones (``.DS_Store``, ``.ipynb_checkpoints/``), as
    ``datasets``' imagefolder skips them."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _is_image(path: Path) -> bool:
    allow_phone_formats()  # .heic, .heif, .avif count as images, as for --dataset
    return path.suffix.lower() in ImageFolder.EXTENSIONS


def _found(files: list[Path]) -> str:
    """'found 3 files (.csv, .txt)', or 'found nothing'."""
    if not files:
        return "found nothing"
    kinds = Counter(file.suffix.lower() or "no extension" for file in files)
    return f"found {len(files)} file{'s' * (len(files) != 1)} ({', '.join(sorted(kinds))})"


def _files_as_dataset(files: list[Path]) -> datasets.Dataset:
    paths = [str(file.resolve()) for file in files]
    return datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())


def _data_set_images(source: str, args: DataArguments) -> datasets.Dataset:
    """The test split's images (every split's without one) of a data set; the options that describe the training
    data (class names, columns, revision, held-out classes) do not apply to it."""
    outside = dataclasses.replace(
        args, dataset=source, dataset_revision=PINNED_REVISIONS.get(source), class_names="auto", image_column=None,
        label_column=None, holdout_classes=0,
    )  # fmt: skip
    splits = {split_name(name): split for name, split in load_raw(source, outside).items()}
    chosen = {"test": splits["test"]} if "test" in splits else splits
    images = [split.select_columns([image_column(split, name)]) for name, split in chosen.items()]
    images = [split.rename_column(split.column_names[0], "image") if split.column_names != ["image"] else split
              for split in images]  # fmt: skip
    return datasets.concatenate_datasets(images)
