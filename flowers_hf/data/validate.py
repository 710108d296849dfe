"""Images that cannot be trained on, found before training starts: listed in ``bad_images.json`` and left out.

An image is bad when decoding it the way training does (``datasets.Image`` then ``to_rgb``) fails: an empty
file, a file that is not an image, a truncated or corrupt one, or one with more pixels than PIL's
decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``). Odd but valid images (CMYK, grayscale, RGBA,
palette, 16-bit, 1×1) decode and are kept: the transforms convert them to RGB.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, ImageOps, UnidentifiedImageError

from flowers_hf.core.errors import BadImagesError
from flowers_hf.data.images import to_rgb

logger = logging.getLogger(__name__)

ON_BAD_IMAGE = ("skip", "error")
BAD_IMAGES_FILE = "bad_images.json"
_CHECKED = datasets.Features({"problem": datasets.Value("string"), "path": datasets.Value("string")})
_IMAGES_PER_PROCESS = 500  # below this, starting worker processes costs more than it saves


def image_problem(value: dict[str, Any]) -> str | None:
    """Why an encoded image cannot be used for training, or ``None`` when it decodes.

    The header tells empty files, other files and decompression bombs apart without decoding. Truncated or
    corrupt data shows only when decoding, so every image is decoded, JPEGs in draft mode at 1/8 scale: that
    still reads the whole compressed stream (a truncated file fails) but skips most of the inverse DCT.

    Args:
        value: the image as ``datasets.Image(decode=False)`` gives it, ``{"bytes": …, "path": …}``.
    """
    data, path = value.get("bytes"), value.get("path")
    if data is None and not (path and os.path.isfile(path)):
        return "missing file"
    if (len(data) if data is not None else os.path.getsize(path)) == 0:
        return "empty file"
    try:
        _decode_like_training(io.BytesIO(data) if data is not None else path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))  # PIL's message names 2× the limit past that
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
        return f"decompression bomb: {size}, more than PIL's limit of {Image.MAX_IMAGE_PIXELS:,}"
    except UnidentifiedImageError:
        return "not an image (unknown format)"
    except Exception as error:  # PIL raises many kinds on corrupt data; any of them would stop training
        return f"cannot be decoded: {_without_path(error)}"
    return None


def _decode_like_training(source: str | io.BytesIO) -> None:
    """Decode as ``datasets.Image.decode_example`` (datasets 5.2) and the transforms' ``to_rgb`` do."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse from 1× the limit, not 2×
        with Image.open(source) as image:
            image.draft(image.mode, (1, 1))  # JPEG only (1/8 scale); other formats decode at full size
            image.load()
            # A corrupt EXIF block fails here, as it would in datasets.
            oriented = image.getexif().get(Image.ExifTags.Base.Orientation) is not None
            to_rgb(ImageOps.exif_transpose(image) if oriented else image)


def _without_path(error: Exception) -> str:
    # PIL puts the file path in some messages; the report names the file already.
    return str(error).split(" '/")[0].strip() or type(error).__name__


def find_bad_images(data: datasets.DatasetDict, num_proc: int | None = None) -> list[dict[str, Any]]:
    """Every image of every split that cannot be decoded, as ``{"file", "split", "index", "reason"}``.

    ``file`` is the path relative to the folder that holds all the images (``image_00042.jpg`` for the Oxford
    distribution, ``train/rose/3.png`` for an imagefolder tree), the name stored in the data set for a Hub
    copy, or ``None`` when there is none; ``index`` is the row in the split.

    Args:
        data: splits with an ``image`` column (``datasets.Image``).
        num_proc: worker processes for the check (used for splits of 1,000 images or more).
    """
    checked = {name: _check_split(split, name, num_proc) for name, split in data.items()}
    paths = [p for result in checked.values() for p in result["path"] if p and os.path.isabs(p)]
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else None
    bad = []
    for name, result in checked.items():
        for index, (problem, path) in enumerate(zip(result["problem"], result["path"], strict=True)):
            if problem is not None:
                file = os.path.relpath(path, root) if root and path and os.path.isabs(path) else path
                bad.append({"file": file, "split": name, "index": index, "reason": problem})
    return bad


def _check_split(split: datasets.Dataset, name: str, num_proc: int | None) -> dict[str, list]:
    encoded = split.cast_column("image", datasets.Image(decode=False))
    workers = min(num_proc or 1, len(split) // _IMAGES_PER_PROCESS)
    result = encoded.map(
        _check_batch,
        input_columns="image",
        batched=True,
        batch_size=64,
        remove_columns=encoded.column_names,
        features=_CHECKED,  # mostly None: datasets would infer a null type from the first batches
        num_proc=workers if workers > 1 else None,
        desc=f"Checking the {name} images",
    )
    return {"problem": result["problem"], "path": result["path"]}


def _check_batch(images: list[dict[str, Any]]) -> dict[str, list]:
    return {"problem": [image_problem(image) for image in images], "path": [image["path"] for image in images]}


def drop_bad_images(
    data: datasets.DatasetDict,
    on_bad_image: str = "skip",
    output_dir: str | Path | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Check every image; list the bad ones in ``output_dir/bad_images.json``, then leave them out or stop.

    Args:
        data: splits with ``image`` and ``label`` columns.
        on_bad_image: ``skip`` leaves bad images out; ``error`` raises ``BadImagesError`` listing them.
        output_dir: where ``bad_images.json`` goes (always written, ``[]`` when every image decodes); ``None``:
            nowhere.
        num_proc: worker processes for the check.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
    start = time.monotonic()
    bad = find_bad_images(data, num_proc)
    total = sum(len(split) for split in data.values())
    report = Path(output_dir) / BAD_IMAGES_FILE if output_dir is not None else None
    if report is not None:
        report.write_text(json.dumps(bad, indent=1) + "\n")
    if not bad:
        logger.info("Checked %s images in %.1f s: every one decodes", f"{total:,}", time.monotonic() - start)
        return data
    listing = _listing(bad, report)
    if on_bad_image == "error":
        raise BadImagesError(
            f"{len(bad)} of {total:,} images cannot be decoded{listing}\n"
            "Remove or replace them, or leave them out with --on_bad_image skip."
        )
    logger.warning(
        "Checked %s images in %.1f s: %d cannot be decoded and are left out%s",
        f"{total:,}", time.monotonic() - start, len(bad), listing,
    )  # fmt: skip
    return _without(data, bad)


def _listing(bad: list[dict[str, Any]], report: Path | None) -> str:
    lines = [f"  {b['split']}: {b['file'] or '#' + str(b['index'])}: {b['reason']}" for b in bad[:20]]
    if len(bad) > 20:
        lines.append(f"  … and {len(bad) - 20} more")
    where = f" (all listed in {report})" if report is not None else ""
    return f"{where}:\n" + "\n".join(lines)


def _without(data: datasets.DatasetDict, bad: list[dict[str, Any]]) -> datasets.DatasetDict:
    kept = {}
    for name, split in data.items():
        drop = {b["index"] for b in bad if b["split"] == name}
        if len(drop) == len(split):
            raise BadImagesError(f"none of the {len(split)} images of the '{name}' split can be decoded")
        kept[name] = split.select([i for i in range(len(split)) if i not in drop]) if drop else split
    return datasets.DatasetDict(kept)
