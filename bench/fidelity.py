"""What decoding a large photo at reduced scale changes in the model's input and answer, against every pixel decoded.

    python bench/fidelity.py --model runs/quickstart                    # a run folder (quickstart: ResNet18, 64 px)
    python bench/fidelity.py --architecture resnet18 --image_size 224   # an untrained ResNet18 at 224 px
    python bench/fidelity.py --model runs/quickstart --photos 4 --formats jpeg   # fewer photos, faster

Each photo is a phone's 12-megapixel file (4000×3000 stored, EXIF orientation of a portrait shot, sensor noise):
``--photos`` synthetic flowers (``bench/photos.py``) and scikit-learn's two sample photographs (640×427) enlarged,
each saved as every one of ``--formats``. The reference is the file decoded in full, oriented, through timm's eval
transform. Against it: ``served``, ``ImageClassifier.open`` (JPEG DCT scaling and box reduction down to twice the
eval resize), and ``before``, the demo's decoding until 2026-12-05 (``open_image`` shrinking to 1024 px with Lanczos).
For each, the model input's difference in pixel levels (of 255, after the resize and crop: largest and mean) and the
answer's (largest difference of a class probability, top-1 agreement), per format; a table, then the JSON.
"""

from __future__ import annotations

import datetime
import io
import json
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.datasets import load_sample_image
from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging
from flowers_hf.data.images import open_image, to_rgb
from flowers_hf.data.transforms import build_eval_transform, eval_crop
from flowers_hf.serving.classifier import ImageClassifier

if __name__ == "__main__":  # python bench/fidelity.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import FidelityArguments
from bench.photos import PHONE_SIDE, phone_jpeg, phone_photo
from bench.serve import make_model

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
SAMPLE_PHOTOGRAPHS = ("china.jpg", "flower.jpg")  # scikit-learn's, the only real photographs it ships


def phone_files(photos: int, side: int = PHONE_SIDE) -> dict[str, Image.Image | bytes]:
    """The photos by name, ``side`` pixels long: synthetic flowers as JPEG bytes, the enlarged photographs as images
    to save."""
    files: dict[str, Image.Image | bytes] = {f"flower {seed}": phone_jpeg(side, seed) for seed in range(photos)}
    for name in SAMPLE_PHOTOGRAPHS:
        files[name] = phone_photo(Image.fromarray(load_sample_image(name)), side)
    return files


def encoded(photo: Image.Image | bytes, fmt: str) -> bytes:
    """``photo`` as a file of ``fmt``, with its EXIF orientation (a JPEG already encoded is decoded and saved again
    for another format)."""
    if isinstance(photo, bytes):
        if fmt == "jpeg":
            return photo
        with Image.open(io.BytesIO(photo)) as image:
            photo, photo.info["exif"] = image.copy(), image.getexif().tobytes()
    buffer = io.BytesIO()
    quality = {"quality": 92} if fmt in ("jpeg", "webp") else {}
    photo.save(buffer, PILLOW_FORMATS[fmt], exif=photo.info.get("exif", b""), **quality)
    return buffer.getvalue()


def compare(classifier: ImageClassifier, data: bytes) -> dict[str, dict[str, float]]:
    """The served and the earlier decoding of ``data`` against its full decode: pixel levels and probabilities."""
    crop, transform = eval_crop(classifier.prep), build_eval_transform(classifier.prep)
    with Image.open(io.BytesIO(data)) as full:
        reference = to_rgb(ImageOps.exif_transpose(full))
    images = {"served": classifier.open(io.BytesIO(data)), "before": open_image(io.BytesIO(data))}
    pixels = {name: np.asarray(crop(image), dtype=np.int16) for name, image in {"full": reference, **images}.items()}
    batch = torch.stack([transform(image) for image in (reference, *images.values())])
    probabilities = classifier.probabilities(batch).numpy()
    result = {}
    for index, name in enumerate(images, start=1):
        levels = np.abs(pixels[name] - pixels["full"])
        result[name] = {
            "max_levels": int(levels.max()),
            "mean_levels": float(levels.mean()),
            "max_probability_difference": float(np.abs(probabilities[index] - probabilities[0]).max()),
            "same_top1": bool(probabilities[index].argmax() == probabilities[0].argmax()),
        }
    return result


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per format and decoding: the largest and mean pixel differences, the largest probability difference, top-1
    agreement."""
    summary: dict[str, dict[str, Any]] = {}
    for fmt in dict.fromkeys(row["format"] for row in rows):
        for path in ("served", "before"):
            figures = [row[path] for row in rows if row["format"] == fmt]
            summary[f"{fmt} {path}"] = {
                "photos": len(figures),
                "max_levels": max(f["max_levels"] for f in figures),
                "mean_levels": float(np.mean([f["mean_levels"] for f in figures])),
                "max_probability_difference": max(f["max_probability_difference"] for f in figures),
                "top1_agreement": float(np.mean([f["same_top1"] for f in figures])),
            }
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(FidelityArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="flowers_fidelity_") as tmp:
        model = args.model or make_model(args.architecture, args.image_size or 224, Path(tmp) / "model")
        classifier = ImageClassifier.from_pretrained(model)
        rows = [
            {"photo": name, "format": fmt, **compare(classifier, encoded(photo, fmt))}
            for name, photo in phone_files(args.photos, args.side).items()
            for fmt in args.formats
        ]
    summary = {
        "model": str(args.model or args.architecture),
        "input_size": classifier.prep.input_size[0],
        "resize_side": classifier.resize_side,
        "by_format": summarize(rows),
        "photos": rows,
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "bench/fidelity.py", *argv]),
        "arguments": asdict(args),
    }
    size = f"{args.side * args.side * 3 / 4 / 1e6:g}-MP photos"
    print(f"{summary['model']} at {summary['input_size']} px (resized to {summary['resize_side']}), {size}")
    columns = ("photos", "max levels", "mean levels", "max prob diff", "same top-1")
    print(f"{'format, decoding':<18}" + "".join(f"{column:>14}" for column in columns))
    for name, row in summary["by_format"].items():
        print(
            f"{name:<18}{row['photos']:>14}{row['max_levels']:>14}{row['mean_levels']:>14.3f}"
            f"{row['max_probability_difference']:>14.2e}{row['top1_agreement']:>14.0%}"
        )
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
