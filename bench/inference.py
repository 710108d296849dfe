"""The demo's latency, end to end, against the bare forward pass: for ``bench/run.py``, and alone.

    python bench/inference.py --models resnet18                   # ResNet18 at 224 px: a 500-px and a 12-MP photo
    python bench/inference.py --models resnet18 --infer_runs 100  # more rounds
    python bench/inference.py --models test_resnet --image_size 64 --phone_side 800 --infer_runs 3   # a dry run

"End to end" is what one click on the demo's Classify button runs (``demo/app.py``: ``classify_uploads``), from the
file's bytes to the answer: ``ImageClassifier.open`` (decoding at reduced scale, EXIF orientation, RGB), ``prepare``
(timm's eval resize and centre crop, normalisation), the forward pass, softmax and top 5: ``predict`` on the file's
path. It is timed on two photos for PyTorch eager and (``--onnx``, on a CPU) the model's ONNX fp32 and int8 exports,
made as ``python -m flowers_hf.export`` makes them: ``photo``, a JPEG of the synthetic set (shorter side
``--source_image_size``, 500 px like Flowers-102), and ``phone``, a phone's 12-megapixel JPEG (``bench/photos.py``).
In the same rounds, each in turn so that all see the same load: the bare forward of each backend on a ready tensor;
on the int8 model, the click step by step (``open``, ``prepare``, ``answer``) and ``before``, the click as it ran
until 2026-12-05. Alone, the model is untrained (latency does not depend on the weights), int8 is calibrated on 64
drawn flowers, the int8 click on the 500-px photo is also timed under other ONNX Runtime settings, in blocks
(``SESSION_VARIANTS``), a table goes to stdout and the JSON is its last line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging
from flowers_hf.data.images import open_image
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.export.onnx import export_onnx, quantize_int8
from flowers_hf.model.modeling import save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.onnx_backend import ONNX_DIR, ONNX_FILES, PROVIDERS, session_options

if __name__ == "__main__":  # python bench/inference.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import BenchArguments
from bench.photos import calibration_batches_of, drawn_jpegs, phone_jpeg
from bench.serve import make_model
from bench.tables import serving_table
from bench.timing import machine, milliseconds, percentile, synchronize

logger = logging.getLogger("bench")

# The demo's latency keys per backend: PyTorch eager's as they were, the ONNX exports' prefixed (onnx_infer_ms_p50, …).
INFER_PREFIXES = {"pytorch": "", "onnx": "onnx_", "onnx-int8": "onnx_int8_"}
# The photos and the infix of their keys: the 500-px JPEG's keys as they were (infer_ms_p50), the 12-MP JPEG's with
# "phone_" (onnx_int8_phone_infer_ms_p50).
PHOTO_INFIXES = {"photo": "", "phone": "phone_"}
CALIBRATION_IMAGES = 64
WARMUP_RUNS = 5

Timing = Callable[[], dict[str, float]]  # one timed call: its milliseconds by key (without the percentile)


def measure_infer(
    args: BenchArguments,
    model: torch.nn.Module,
    prep: Preprocessing,
    photos: dict[str, bytes],
    folder: Path,
    calibration: Iterable[np.ndarray],
) -> dict[str, float]:
    """Milliseconds (``_p50``, ``_p95``) of the demo's click on each photo and of the bare forward on a ready tensor,
    fp32 as the demo runs, for PyTorch eager and (``--onnx``, on a CPU) the ONNX fp32 and int8 exports, with the int8
    click step by step and as it ran before; every timing of a round in turn, so that all see the same load.

    Args:
        args: ``infer_runs``, ``device``, ``onnx``.
        model: the model, contiguous, on the CPU.
        prep: its preprocessing.
        photos: encoded files by name (``photo``, ``phone``).
        folder: where the model, its exports and the photos are written.
        calibration: preprocessed batches that calibrate int8.
    """
    save_model(model, folder, prep)
    classifiers = {"pytorch": ImageClassifier.from_pretrained(folder, device=args.device)}
    if args.onnx and args.device == "cpu":
        export_onnx_models(classifiers["pytorch"], folder, calibration)
        classifiers |= {backend: ImageClassifier.from_pretrained(folder, backend=backend) for backend in ONNX_FILES}
    paths = {name: folder / f"{name}.jpg" for name in photos}
    for name, path in paths.items():
        path.write_bytes(photos[name])
    timings = _timings(classifiers, paths, args.device)
    times: dict[str, list[float]] = {}
    for run in tqdm(range(-WARMUP_RUNS, args.infer_runs), desc="inference", leave=False):
        for timing in timings:
            for key, elapsed in timing().items():
                if run >= 0:
                    times.setdefault(key, []).append(elapsed)
    return {f"{key}_p{q}": percentile(values, q) for key, values in times.items() for q in (50, 95)}


def _timings(classifiers: dict[str, ImageClassifier], paths: dict[str, Path], device: str) -> list[Timing]:
    """What a round times: every backend's click on every photo and its bare forward; then on the int8 model (else
    the last one), each photo's click step by step (:func:`click_steps`) and as it ran before (:func:`click_before`)."""
    ready = classifiers["pytorch"].preprocess(open_image(next(iter(paths.values()))))[None].to(device)
    timings = []
    for backend, classifier in classifiers.items():
        prefix = INFER_PREFIXES[backend]
        timings += [
            _timed(f"{prefix}{PHOTO_INFIXES[name]}infer_ms", classifier.predict, p) for name, p in paths.items()
        ]
        timings.append(_timed(f"{prefix}infer_ceiling_ms", bare_forward, classifier, ready, device))
    served = classifiers.get("onnx-int8", classifier)
    before = build_eval_transform(served.prep)
    for name, path in paths.items():
        timings.append(lambda path=path, name=name: click_steps(served, path, name))
        timings.append(_timed(f"{name}_before_ms", click_before, served, before, path))
    return timings


def _timed(key: str, function: Callable, *args: Any) -> Timing:
    return lambda: {key: milliseconds(lambda: function(*args))}


@torch.inference_mode()
def bare_forward(classifier: ImageClassifier, tensor: torch.Tensor, device: str) -> None:
    """The model alone on a ready batch, as the demo's ``predict`` runs it."""
    classifier.model(tensor)
    synchronize(device)


def click_steps(classifier: ImageClassifier, path: Path, name: str) -> dict[str, float]:
    """One click on ``path`` with its steps timed, keyed ``{name}_{step}_ms``: ``open`` (decoding, orientation,
    reduction), ``prepare`` (resize, crop, normalisation) and ``answer`` (the forward pass, softmax, top 5)."""
    stamps = [time.perf_counter()]
    image = classifier.open(path)
    stamps.append(time.perf_counter())
    inputs = classifier.prepare(image)
    stamps.append(time.perf_counter())
    classifier.predict_and_score_prepared([inputs])
    stamps.append(time.perf_counter())
    steps = ("open", "prepare", "answer")
    return {
        f"{name}_{step}_ms": (end - start) * 1000
        for step, start, end in zip(steps, stamps[:-1], stamps[1:], strict=True)
    }


def click_before(classifier: ImageClassifier, transform: Callable, path: Path) -> list[tuple[dict[str, float], float]]:
    """The demo's click as it ran until 2026-12-05: ``open_image`` shrinking the photo to 1024 px (JPEG draft, then
    Lanczos), ``transform`` (``build_eval_transform``: timm's eval transform, ending in torchvision's ``ToTensor``
    and ``Normalize`` on torch's threads), the batch copied by ``torch.cat``, then the same forward pass and top 5."""
    return classifier.predict_and_score_prepared([torch.cat([transform(open_image(path))[None]])])


def export_onnx_models(classifier: ImageClassifier, folder: Path, calibration: Iterable[np.ndarray]) -> None:
    """``onnx/model.onnx`` and ``onnx/model_int8.onnx`` in ``folder``, with ``python -m flowers_hf.export``'s code:
    int8 (static for a convolutional network) calibrated on ``calibration``."""
    fp32 = folder / ONNX_DIR / ONNX_FILES["onnx"]
    export_onnx(classifier.model, fp32, classifier.prep.input_size)
    settings = quantize_int8(fp32, folder / ONNX_DIR / ONNX_FILES["onnx-int8"], "auto", calibration)
    logger.info("ONNX exports of the benchmark model: fp32 and int8 (%s)", settings)


# ONNX Runtime settings the int8 click is also timed under (bench/inference.py alone), the served ones first.
SESSION_VARIANTS = {
    "served": {},  # session_options(): a thread per physical core, in sequence, all optimisations, no spinning
    "static": {"fixed_batch": True},  # the same with the batch dimension fixed at 1: a static-shape graph
    "spinning": {"spinning": True},  # threads that busy-wait for work, ONNX Runtime's default
    "one_thread": {"threads": 1},
}
SESSION_BLOCKS = 3


def time_sessions(folder: Path, path: Path, runs: int) -> dict[str, float]:
    """p50 and p95 milliseconds of the int8 click on ``path`` under each of ``SESSION_VARIANTS``, keyed
    ``int8_click_{variant}_ms_p50``: blocks of ``runs`` clicks with one variant's session alive (another's threads
    would compete with it), the variants in turn ``SESSION_BLOCKS`` times.

    Args:
        folder: the model folder with its int8 export.
        path: the photo.
        runs: timed clicks per block, after ``WARMUP_RUNS`` untimed ones.
    """
    classifier = ImageClassifier.from_pretrained(folder, backend="onnx-int8")
    times: dict[str, list[float]] = {name: [] for name in SESSION_VARIANTS}
    for _ in range(SESSION_BLOCKS):
        for name, settings in SESSION_VARIANTS.items():
            classifier.model.session = _session(classifier.model.path, **settings)  # the one before ends here
            for run in range(-WARMUP_RUNS, runs):
                elapsed = milliseconds(lambda: classifier.predict(path))
                if run >= 0:
                    times[name].append(elapsed)
    return {f"int8_click_{name}_ms_p{q}": percentile(values, q) for name, values in times.items() for q in (50, 95)}


def _session(path: Path, fixed_batch: bool = False, spinning: bool = False, threads: int | None = None):
    options = session_options(threads, spinning)
    if fixed_batch:
        options.add_free_dimension_override_by_name("batch", 1)  # the exporter's name (export_onnx: Dim("batch"))
    return ort.InferenceSession(str(path), options, providers=PROVIDERS)


def int8_ratios(run: dict[str, Any]) -> dict[str, float]:
    """The int8 click over PyTorch eager's bare forward, for each photo timed."""
    return {
        f"int8_{infix}ratio": round(run[f"onnx_int8_{infix}infer_ms_p50"] / run["infer_ceiling_ms_p50"], 3)
        for infix in PHOTO_INFIXES.values()
        if f"onnx_int8_{infix}infer_ms_p50" in run
    }


def bench_serving(args: BenchArguments, name: str) -> dict[str, Any]:
    """Every figure of :func:`measure_infer` for an untrained ``name`` at ``--image_size``, with the int8 ratios."""
    with tempfile.TemporaryDirectory(prefix="flowers_bench_infer_") as tmp:
        folder = make_model(name, args.image_size, Path(tmp) / "model")
        classifier = ImageClassifier.from_pretrained(folder)
        photo, *others = drawn_jpegs(CALIBRATION_IMAGES + 1, args.source_image_size)
        calibration = calibration_batches_of(others, build_eval_transform(classifier.prep))
        photos = {"photo": photo, "phone": phone_jpeg(args.phone_side)}
        figures = measure_infer(args, classifier.model, classifier.prep, photos, folder, calibration)
        if args.onnx:
            figures |= time_sessions(folder, folder / "photo.jpg", args.infer_runs)
    run = {"model": name, "image_size": classifier.prep.input_size[0]} | {k: round(v, 2) for k, v in figures.items()}
    return run | int8_ratios(run)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    load_start = os.getloadavg()[0]
    runs = [bench_serving(args, name) for name in args.models]
    summary = {
        "runs": runs,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "bench/inference.py", *argv]),
        "load_average": [load_start, os.getloadavg()[0]],
    }
    if not args.json_only:
        heading = f"load average {load_start:.1f} at the start, {summary['load_average'][1]:.1f} at the end"
        print("\n\n".join([heading, *("\n".join(serving_table(run)) for run in runs)]))
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
