"""Export a run folder for serving on CPUs: ONNX with the calibrated head, and an int8 copy.

    python -m flowers_hf.export runs/quickstart --format onnx
    python -m flowers_hf.export runs/quickstart --format onnx --quantize int8
    python -m flowers_hf.export runs/r18 --format onnx --quantize int8 --dataset /data/oxford-flowers102
    python -m flowers_hf.export runs/vit --format onnx --quantize int8 --int8_method dynamic --eval_split none

Writes RUN/onnx/: model.onnx (fp32, any batch size), with --quantize int8 model_int8.onnx, and export.json: what
they were made from (the run's weights and config, by SHA-256), how (exporter, versions, opset, input and output,
preprocessing, quantization settings, calibration images), and how they compare on --eval_split: ONNX fp32 against
PyTorch (largest difference of the probabilities, accuracy) and int8 against fp32 (top-1 agreement, accuracy
change). Static int8 calibrates on the first --calibration_images validation images of the data set the run was
trained with (its train_config.yaml; --dataset overrides it). The run's model card gets a section on running them.
Serve them with ImageClassifier.from_pretrained(RUN, backend="onnx-int8") or python demo/app.py --backend onnx-int8.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import onnx
import onnxruntime
import onnxscript
import timm
import torch
import transformers

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.core.errors import ArgumentError, MissingFileError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.labels import check_class_names
from flowers_hf.data.subset import sample_split
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.evaluation.evaluator import Evaluator
from flowers_hf.export.arguments import PROG, ExportArguments
from flowers_hf.export.onnx import calibration_batches, choose_int8_method, export_onnx, quantize_int8
from flowers_hf.reporting.card_sections import add_onnx_usage
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.onnx_backend import INPUT_NAME, ONNX_DIR, ONNX_FILES, OUTPUT_NAME, RECORD_FILE, sha256
from flowers_hf.serving.run import RUN_CONFIG_FILE, load_run

logger = logging.getLogger("flowers_hf.export")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_args((ExportArguments,), _run_flag_first(argv), prog=PROG)
    run = check_run_folder(Path(args.run).expanduser())
    saved = load_run(run)
    classifier = saved.classifier
    folder = run / ONNX_DIR
    for name in (*ONNX_FILES.values(), RECORD_FILE):  # nothing of an earlier export may outlive this one
        (folder / name).unlink(missing_ok=True)

    # fp32, then int8 (static needs the validation images), then both against PyTorch on --eval_split.
    fp32 = folder / ONNX_FILES["onnx"]
    export_onnx(classifier.model, fp32, classifier.prep.input_size)
    method = choose_int8_method(fp32) if args.int8_method == "auto" else args.int8_method
    data = _load_data(args, run, saved.data_options, classifier.class_names) if _needs_data(args, method) else None
    record = export_record(run, classifier, fp32, ["python", "-m", "flowers_hf.export", *argv])
    if args.quantize:
        calibration = None
        if method == "static":
            transform = build_eval_transform(classifier.prep)  # the one eval pipeline, as served
            calibration = calibration_batches(data["validation"], transform, args.calibration_images, args.batch_size)
        record["int8"] = quantize_int8(fp32, folder / ONNX_FILES["onnx-int8"], method, calibration)
    record["files"] = {path.name: {"sha256": sha256(path), "bytes": path.stat().st_size} for path in _exported(folder)}
    if args.eval_split != "none":
        split = sample_split(data[args.eval_split], args.max_eval_samples)
        record["comparison"] = compare_backends(run, classifier, split, args.eval_split, args.batch_size)

    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    if (run / "README.md").is_file():
        add_onnx_usage(run / "README.md", record)
    print(summary_text(record, folder))
    return record


def check_run_folder(run: Path) -> Path:
    """``run`` if it holds a timm model written by ``train.py``; else a ``UserError`` that says what is wrong."""
    missing = [name for name in ("config.json", "model.safetensors") if not (run / name).is_file()]
    if missing:
        raise MissingFileError(f"{run} is not a run folder written by train.py: {', '.join(missing)} missing")
    config = json.loads((run / "config.json").read_text())
    if "architecture" not in config:  # timm's Hub layout names the architecture; transformers' own models do not
        raise ArgumentError(
            f"{run}/config.json describes a {config.get('model_type', 'non-timm')!r} model, not a timm one: "
            f"{PROG} exports the timm models that train.py writes"
        )
    return run


def export_record(run: Path, classifier: ImageClassifier, fp32: Path, command: list[str]) -> dict[str, Any]:
    """What ``fp32`` was made from and how, for ``export.json``.

    Args:
        run: the run folder.
        classifier: the run as loaded for the export.
        fp32: the exported ``model.onnx``.
        command: the command line that made it.
    """
    config = classifier.model.config
    height, width = classifier.prep.input_size
    libraries = (torch, onnx, onnxscript, onnxruntime, timm, transformers)
    calibrated = getattr(config, "calibration", None)
    return {
        "format": "onnx",
        "made_from": {
            "run": run.name,  # only the folder's name: the rest is a path on this machine
            "model_sha256": sha256(run / "model.safetensors"),
            "config_sha256": sha256(run / "config.json"),
            "architecture": config.architecture,
            "num_classes": config.num_labels,
            "calibration": calibrated,
        },
        "how": {
            "command": shlex.join(command),
            "date": datetime.date.today().isoformat(),
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": _opset(fp32),
            "versions": {module.__name__: module.__version__ for module in libraries},
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, height, width], "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", config.num_labels], "calibrated": bool(calibrated)},
            "preprocessing": dataclasses.asdict(classifier.prep),
        },
    }


def compare_backends(
    run: Path, classifier: ImageClassifier, split: datasets.Dataset, split_name: str, batch_size: int
) -> dict[str, Any]:
    """Every exported model against PyTorch on ``split``, with the same preprocessing: ONNX fp32's largest
    probability difference and accuracy; int8's top-1 agreement with fp32 and its accuracy change, in points.

    Args:
        run: the run folder with ``onnx/``.
        classifier: the PyTorch model of the run.
        split: the images, with labels.
        split_name: its name, for the record.
        batch_size: images per forward pass.
    """
    passes = {"pytorch": _predict(classifier, split, "pytorch", batch_size)}
    for backend, name in ONNX_FILES.items():
        if (run / ONNX_DIR / name).is_file():
            served = ImageClassifier.from_pretrained(run, backend=backend)
            passes[backend] = _predict(served, split, backend, batch_size)
    labels = np.asarray(split["label"])
    probabilities = {backend: torch.from_numpy(logits).softmax(-1).numpy() for backend, logits in passes.items()}
    top1 = {backend: p.argmax(1) for backend, p in probabilities.items()}
    result: dict[str, Any] = {"split": split_name, "images": len(labels)}
    result |= {f"{backend}_accuracy": float((top1[backend] == labels).mean()) for backend in passes}
    result["onnx_max_abs_probability_difference"] = float(
        np.abs(probabilities["onnx"] - probabilities["pytorch"]).max()
    )
    if "onnx-int8" in passes:
        result["int8_top1_agreement"] = float((top1["onnx-int8"] == top1["onnx"]).mean())
        result["int8_accuracy_change_points"] = 100 * (result["onnx-int8_accuracy"] - result["onnx_accuracy"])
        result["int8_max_abs_probability_difference"] = float(
            np.abs(probabilities["onnx-int8"] - probabilities["onnx"]).max()
        )
    return result


def summary_text(record: dict[str, Any], folder: Path) -> str:
    """The files written and how they compare, for the terminal."""
    lines = [f"Exported {record['made_from']['run']} ({record['made_from']['architecture']}) to {folder}:"]
    lines += [f"  {name:<18}{entry['bytes'] / 1e6:8.1f} MB" for name, entry in record["files"].items()]
    if "int8" in record:
        lines.append(f"  int8: {record['int8']['method']} quantization")
    if comparison := record.get("comparison"):
        lines.append(
            f"  {comparison['split']} ({comparison['images']:,} images): PyTorch {comparison['pytorch_accuracy']:.2%}, "
            f"ONNX fp32 {comparison['onnx_accuracy']:.2%} (probabilities within "
            f"{comparison['onnx_max_abs_probability_difference']:.1e})"
        )
        if "int8_top1_agreement" in comparison:
            lines.append(
                f"  int8 {comparison['onnx-int8_accuracy']:.2%} ({comparison['int8_accuracy_change_points']:+.2f} "
                f"points), top-1 agreement with fp32 {comparison['int8_top1_agreement']:.2%}"
            )
    return "\n".join(lines)


def _predict(classifier: ImageClassifier, split: datasets.Dataset, backend: str, batch_size: int) -> np.ndarray:
    return Evaluator(classifier, batch_size, disable_tqdm=True).predict(split, backend).logits


def _run_flag_first(argv: list[str]) -> list[str]:
    """``RUN`` may come first without ``--run``."""
    return ["--run", *argv] if argv and not argv[0].startswith("-") else argv


def _needs_data(args: ExportArguments, method: str) -> bool:
    return args.eval_split != "none" or (args.quantize is not None and method == "static")


def _load_data(
    args: ExportArguments, run: Path, options: dict[str, Any], class_names: list[str]
) -> datasets.DatasetDict:
    """The data set the run was trained with (its ``train_config.yaml``), or ``--dataset``, checked to have the
    model's classes in its order."""
    options = dict(options)
    if args.dataset:
        options["dataset"] = args.dataset
    if "dataset" not in options:
        raise ArgumentError(
            f"{run} has no {RUN_CONFIG_FILE} naming its data set: give --dataset (or --eval_split none with "
            "--int8_method dynamic, which need no images)"
        )
    data = load_data(args=DataArguments(**options)).splits
    check_class_names(data["train"].features["label"].names, class_names)
    return data


def _opset(path: Path) -> int:
    return next(entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx"))


def _exported(folder: Path) -> list[Path]:
    return [folder / name for name in ONNX_FILES.values() if (folder / name).is_file()]


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
