"""The demo's latency in ``bench/run.py``: ``ImageClassifier.predict`` on a JPEG path against the bare forward on a
ready tensor, for PyTorch eager and (``--onnx``, on a CPU) the model's ONNX fp32 and int8 exports, made as
``python -m flowers_hf.export`` makes them."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from bench.arguments import BenchArguments
from bench.timing import milliseconds, percentile, synchronize
from flowers_hf.data.images import open_image
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.export.onnx import calibration_batches, export_onnx, quantize_int8
from flowers_hf.model.modeling import save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.onnx_backend import ONNX_DIR, ONNX_FILES

logger = logging.getLogger("bench")

# The demo's latency keys per backend: PyTorch eager's as they were, the ONNX exports' prefixed (onnx_infer_ms_p50, …).
INFER_PREFIXES = {"pytorch": "", "onnx": "onnx_", "onnx-int8": "onnx_int8_"}
CALIBRATION_IMAGES = 64


def measure_infer(
    args: BenchArguments,
    model: torch.nn.Module,
    prep: Preprocessing,
    photo: bytes,
    folder: Path,
    calibration: datasets.Dataset,
) -> dict[str, float]:
    """Milliseconds of the demo's ``ImageClassifier.predict`` on a JPEG path and of the bare forward on a ready
    tensor, fp32 as the demo runs, for PyTorch eager and (``--onnx``, on a CPU) the ONNX fp32 and int8 exports; every
    backend's two timings in turn, so that all of them see the same load."""
    save_model(model, folder, prep)
    classifiers = {"pytorch": ImageClassifier.from_pretrained(folder, device=args.device)}
    if args.onnx and args.device == "cpu":
        export_onnx_models(classifiers["pytorch"], folder, calibration)
        classifiers |= {backend: ImageClassifier.from_pretrained(folder, backend=backend) for backend in ONNX_FILES}
    path = folder / "photo.jpg"
    path.write_bytes(photo)
    tensor = classifiers["pytorch"].preprocess(open_image(path))[None].to(args.device)

    times: dict[str, tuple[list[float], list[float]]] = {backend: ([], []) for backend in classifiers}
    for run in tqdm(range(-5, args.infer_runs), desc="inference", leave=False):  # 5 untimed warm-up runs
        for backend, classifier in classifiers.items():
            demo_ms = milliseconds(partial(classifier.predict, path))  # ends on .cpu(): no synchronize needed
            bare_ms = milliseconds(partial(bare_forward, classifier, tensor, args.device))
            if run >= 0:
                times[backend][0].append(demo_ms)
                times[backend][1].append(bare_ms)
    return {
        f"{INFER_PREFIXES[backend]}{key}": percentile(values, q)
        for backend, (demo, ceiling) in times.items()
        for key, values, q in (
            ("infer_ms_p50", demo, 50),
            ("infer_ms_p95", demo, 95),
            ("infer_ceiling_ms_p50", ceiling, 50),
            ("infer_ceiling_ms_p95", ceiling, 95),
        )
    }


@torch.inference_mode()
def bare_forward(classifier: ImageClassifier, tensor: torch.Tensor, device: str) -> None:
    """The model alone on a ready batch, as the demo's ``predict`` runs it."""
    classifier.model(tensor)
    synchronize(device)


def export_onnx_models(classifier: ImageClassifier, folder: Path, calibration: datasets.Dataset) -> None:
    """``onnx/model.onnx`` and ``onnx/model_int8.onnx`` in ``folder``, with ``python -m flowers_hf.export``'s code:
    int8 calibrated on the first ``CALIBRATION_IMAGES`` of ``calibration`` through the eval pipeline."""
    fp32 = folder / ONNX_DIR / ONNX_FILES["onnx"]
    export_onnx(classifier.model, fp32, classifier.prep.input_size)
    batches = calibration_batches(calibration, build_eval_transform(classifier.prep), CALIBRATION_IMAGES)
    settings = quantize_int8(fp32, folder / ONNX_DIR / ONNX_FILES["onnx-int8"], "auto", batches)
    logger.info("ONNX exports of the benchmark model: fp32 and int8 (%s)", settings)
