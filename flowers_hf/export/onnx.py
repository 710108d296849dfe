"""A trained model to ONNX files: ``model.onnx`` (fp32, the calibrated head in it, any batch size) and an int8 copy
made with ONNX Runtime's quantization tools. The command line is ``python -m flowers_hf.export``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from transformers import TimmWrapperForImageClassification

from flowers_hf.core.errors import ArgumentError
from flowers_hf.data.transforms import ImageTransform
from flowers_hf.serving.onnx_backend import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger(__name__)

INT8_METHODS = ("auto", "static", "dynamic")
# Static quantization: QDQ pairs, which ONNX Runtime fuses into integer kernels (QLinearConv, QLinearMatMul);
# weights int8 per output channel, activations uint8 with min-max ranges from the calibration images.
STATIC_SETTINGS = {
    "quant_format": "QDQ",
    "per_channel": True,
    "weight_type": "QInt8",
    "activation_type": "QUInt8",
    "calibrate_method": "MinMax",
}


def export_onnx(model: TimmWrapperForImageClassification, path: Path, input_size: tuple[int, int]) -> None:
    """Write ``model`` as ONNX: input ``pixel_values`` ``(batch, 3, H, W)`` with any batch size, output ``logits``.

    The calibration temperature is part of the head's weights (``flowers_hf.evaluation.calibration``), so the logits
    are the calibrated ones.

    Args:
        model: the loaded run, in eval mode.
        path: the ``.onnx`` file to write, weights inside (no external data file).
        input_size: ``(H, W)`` of the preprocessing.
    """
    # The wrapper's forward is timm_model's plus transformers' output bookkeeping; a batch of 2, because the
    # exporter specialises a dimension it sees as 1.
    example = torch.zeros(2, 3, *input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("onnxscript", "onnx_ir"):  # onnxscript 0.7.2 logs each of its optimisation passes at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        # The dynamo exporter (torch.export, translated by onnxscript): torch 2.14's default and its maintained one;
        # the TorchScript exporter (dynamo=False) is deprecated there and warns on every call.
        torch.onnx.export(
            model.timm_model.eval(),
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    except torch.onnx.OnnxExporterError as error:
        cause = str(error.__cause__ or error).strip().splitlines()[0]
        raise ArgumentError(
            f"The architecture {model.config.architecture!r} cannot be exported to ONNX by torch {torch.__version__}'s "
            f"exporter ({type(error).__name__}: {cause}); serve it with the PyTorch backend"
        ) from error
    logger.info("Wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


def choose_int8_method(path: Path) -> str:
    """``static`` for a convolutional network; ``dynamic`` for one with attention (a Softmax inside the graph: the
    model's own output is logits), whose activations static ranges quantize poorly, as ONNX Runtime's guide says."""
    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    return "dynamic" if "Softmax" in ops else "static"


def quantize_int8(
    fp32: Path, int8: Path, method: str, calibration: Iterable[np.ndarray] | None = None
) -> dict[str, Any]:
    """Quantize ``fp32`` to ``int8`` with ONNX Runtime's tools and return the settings used, for the record.

    Args:
        fp32: the exported model.
        int8: the file to write.
        method: ``static`` (activation ranges from ``calibration``), ``dynamic`` (ranges per batch at run time), or
            ``auto`` (:func:`choose_int8_method`).
        calibration: preprocessed image batches ``(n, 3, H, W)``, float32; needed for ``static``.
    """
    if method not in INT8_METHODS:
        raise ArgumentError(f"--int8_method must be one of {INT8_METHODS}, got {method!r}")
    method = choose_int8_method(fp32) if method == "auto" else method
    with tempfile.TemporaryDirectory(prefix="flowers_quant_") as tmp:
        # ONNX Runtime's recommended pre-pass: shape inference and graph fusions (BatchNorm into Conv), so that the
        # fused weights are what gets quantized.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        if method == "dynamic":
            # onnxruntime 1.31's dynamic quantizer re-infers shapes and fails on those the exporter recorded
            # ("Inferred shape and existing shape differ" at the head); without them it infers its own.
            model = onnx.load(str(prepared))
            del model.graph.value_info[:]
            onnx.save(model, str(prepared))
            quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
            settings: dict[str, Any] = {"weight_type": "QInt8"}
        else:
            if calibration is None:
                raise ArgumentError("static int8 quantization needs calibration images; or use --int8_method dynamic")
            reader = _Batches(iter(calibration))
            quantize_static(str(prepared), str(int8), reader, **_static_options())
            settings = {**STATIC_SETTINGS, "calibration_images": reader.images}
    logger.info("Wrote %s (%s int8, %.1f MB)", int8, method, int8.stat().st_size / 1e6)
    return {"method": method, **settings}


def _static_options() -> dict[str, Any]:
    return {
        "quant_format": QuantFormat[STATIC_SETTINGS["quant_format"]],
        "per_channel": STATIC_SETTINGS["per_channel"],
        "weight_type": QuantType[STATIC_SETTINGS["weight_type"]],
        "activation_type": QuantType[STATIC_SETTINGS["activation_type"]],
        "calibrate_method": CalibrationMethod[STATIC_SETTINGS["calibrate_method"]],
    }


class _Batches(CalibrationDataReader):
    """The calibration batches as ONNX Runtime's calibrator reads them, counting the images."""

    def __init__(self, batches: Iterator[np.ndarray]) -> None:
        self.batches, self.images = batches, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def calibration_batches(
    split: datasets.Dataset, transform: ImageTransform, images: int, batch_size: int = 32
) -> Iterator[np.ndarray]:
    """The first ``images`` images of ``split`` through the eval ``transform``, in batches: what the served model
    sees, so the activation ranges are the served ones.

    Args:
        split: usually validation (never test, which scores the result).
        transform: ``build_eval_transform(prep)``.
        images: how many.
        batch_size: images per batch.
    """
    count = min(images, len(split))
    for start in range(0, count, batch_size):
        rows = split[start : min(start + batch_size, count)]["image"]
        yield torch.stack([transform(image) for image in rows]).numpy()
