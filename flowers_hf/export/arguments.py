"""``python -m flowers_hf.export``'s command-line arguments, parsed by ``transformers.HfArgumentParser``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowers_hf.core.errors import ArgumentError
from flowers_hf.export.onnx import INT8_METHODS

PROG = "python -m flowers_hf.export"
FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
EVAL_SPLITS = ("test", "validation", "none")


@dataclass
class ExportArguments:
    """What to export from which run, and the images that calibrate and check it."""

    run: str | None = field(
        default=None, metadata={"help": "The run folder written by train.py (may come first, without --run)."}
    )
    format: str = field(default="onnx", metadata={"help": "Export format: onnx."})
    quantize: str | None = field(default=None, metadata={"help": "Also write an int8 copy: int8."})
    int8_method: str = field(
        default="auto",
        metadata={
            "help": "static (activation ranges calibrated on validation images), dynamic (ranges per batch at run "
            "time; no images needed), or auto: static for convolutional networks, dynamic for ones with attention."
        },
    )
    calibration_images: int = field(default=256, metadata={"help": "Validation images that calibrate static int8."})
    eval_split: str = field(
        default="test",
        metadata={"help": "Compare the exported models with PyTorch on this split: test, validation, none."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "At most this many images of --eval_split: a seeded sample, stratified by class."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "The data set of calibration and comparison (default: the run's own)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass when comparing."})

    def __post_init__(self) -> None:
        if not self.run:
            raise ArgumentError(f"give the run folder: {PROG} RUN_DIR --format onnx")
        for name, value, allowed in (
            ("--format", self.format, FORMATS),
            ("--quantize", self.quantize, (None, *QUANTIZATIONS)),
            ("--int8_method", self.int8_method, INT8_METHODS),
            ("--eval_split", self.eval_split, EVAL_SPLITS),
        ):
            if value not in allowed:
                raise ArgumentError(f"{name} must be one of {[a for a in allowed if a]}, got {value!r}")
        if self.calibration_images < 1 or self.batch_size < 1 or (self.max_eval_samples or 1) < 1:
            raise ArgumentError("--calibration_images, --batch_size and --max_eval_samples must be positive")
