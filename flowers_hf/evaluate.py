"""Re-evaluate a saved model: training's test pass, calibration, test-time augmentation and a corruption suite.

    python -m flowers_hf.evaluate runs/quickstart --dataset synthetic --split test
    python -m flowers_hf.evaluate runs/quickstart --dataset synthetic --split test --corruptions --tta
    python -m flowers_hf.evaluate runs/r18 --dataset /data/oxford-flowers102 --corruptions --device cuda
    python -m flowers_hf.evaluate user/flowers-r18 --dataset dpdl-benchmark/oxford_flowers102 --output_dir runs/r18_eval

Writes to --output_dir (default: MODEL/eval_<split>) what training's test pass writes: test_results.json
(eval_results.json for --split validation) with the calibration and, with --tta, the TTA scores and latencies,
classification_report.json and confusion_matrix.png; plus reliability_diagram.png, evaluate_config.yaml and, with
--corruptions, robustness.json and robustness.png. Data options not given default to those the run was trained
with (its train_config.yaml).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from PIL import Image
from tqdm.auto import tqdm

from .cache import cache_images
from .calibration import (
    NUM_BINS,
    RELIABILITY_PLOT,
    Calibration,
    calibrate_model,
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
    plot_reliability_diagram,
    softmax,
)
from .checkpoints import ClassMismatchError
from .cli import parse_args, run_cli, setup_logging
from .config import DataArguments
from .corruptions import CORRUPTIONS, SEVERITIES, CorruptionTransform, plot_robustness, robustness_summary
from .data import SPLITS, load_flowers
from .hub import is_hub_id
from .inference import FlowerClassifier
from .metrics import ClassificationMetrics
from .modeling import save_model
from .report import CONFIG_FILE as TRAIN_CONFIG_FILE
from .report import write_test_report
from .transforms import ImageTransform, build_eval_transform
from .tta import TTA_VIEWS, TTATransform, average_probabilities, eval_resize

logger = logging.getLogger("flowers_hf.evaluate")

PROG = "python -m flowers_hf.evaluate"
CONFIG_FILE = "evaluate_config.yaml"
ROBUSTNESS_FILE = "robustness.json"
ROBUSTNESS_PLOT = "robustness.png"
# Metric prefix per split, as training names its files (validation scores are "eval_*" in eval_results.json).
PREFIXES = {"train": "train", "validation": "eval", "test": "test"}


@dataclass
class EvaluationArguments:
    """What to evaluate and which measurements to add to the plain test pass."""

    model: str = field(
        metadata={"help": "A model folder written by train.py, or a Hub repo id; may come first without the flag."}
    )
    split: str = field(default="test", metadata={"help": "The split to evaluate: train, validation or test."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where results go; default MODEL/eval_<split> (required for a Hub id)."}
    )
    corruptions: bool = field(
        default=False, metadata={"help": "Run the corruption suite too: robustness.json and robustness.png."}
    )
    corruption_names: list[str] | None = field(
        default=None, metadata={"help": f"Only these corruptions; default all: {', '.join(CORRUPTIONS)}."}
    )
    severities: list[int] = field(
        default_factory=lambda: list(SEVERITIES), metadata={"help": "The corruption severities to run (1 to 5)."}
    )
    corruption_seed: int = field(
        default=0, metadata={"help": "Seed of the corruptions' random draws (per image, the same at every severity)."}
    )
    tta: bool = field(
        default=False, metadata={"help": "Evaluate with test-time augmentation too, accuracy and latency side by side."}
    )
    tta_views: str = field(
        default="ten_crop",
        metadata={"help": "flip (centre crop and mirror), five_crop (centre and corners) or ten_crop (both: 10)."},
    )
    save_calibration: bool = field(
        default=False,
        metadata={
            "help": "For a model folder without calibration: fold the temperature fitted on validation into its "
            "weights and store it with the unsure threshold in its config.json (train.py does this itself)."
        },
    )
    calibration_bins: int = field(default=NUM_BINS, metadata={"help": "Equal-width bins of the ECE."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use a seeded random subset of this many images of each split (quick checks)."}
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass (TTA: times its views)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, …; auto: cuda when available."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {SPLITS}, got {self.split!r}")
        unknown = sorted(set(self.corruption_names or ()) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"--corruption_names: unknown {unknown}; known: {list(CORRUPTIONS)}")
        if not self.severities or not set(self.severities) <= set(SEVERITIES):
            raise ValueError(f"--severities must be among {SEVERITIES}, got {self.severities}")
        if self.tta_views not in TTA_VIEWS:
            raise ValueError(f"--tta_views must be one of {list(TTA_VIEWS)}, got {self.tta_views!r}")
        if self.output_dir is None and not Path(self.model).expanduser().is_dir():
            raise ValueError(f"--output_dir is needed: the model {self.model!r} is not a local folder")
        if self.save_calibration and (is_hub_id(self.model) or self.max_eval_samples is not None):
            raise ValueError("--save_calibration needs a local model folder and the whole validation split")
        if self.batch_size < 1 or (self.max_eval_samples is not None and self.max_eval_samples < 1):
            raise ValueError("--batch_size and --max_eval_samples must be at least 1")


@dataclass
class Predictions:
    """One pass over a split: logits (``(n, classes)``, or ``(n, views, classes)`` with TTA), labels, timings."""

    logits: np.ndarray
    labels: np.ndarray
    seconds: float  # the whole pass: decoding, transforms, model
    model_seconds: float  # the forward passes only

    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / len(self.labels)

    def model_ms_per_image(self) -> float:
        return 1000.0 * self.model_seconds / len(self.labels)


Corruptor = Callable[[Image.Image, int], Image.Image]


class _Images(torch.utils.data.Dataset):
    """A split's rows as ``(transform(corruption(image, index)), label)``."""

    def __init__(self, split: datasets.Dataset, transform: ImageTransform, corruption: Corruptor | None) -> None:
        self.split, self.transform, self.corruption = split, transform, corruption

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.split[index]
        image = row["image"] if self.corruption is None else self.corruption(row["image"], index)
        return self.transform(image), row["label"]


class Evaluator:
    """Runs passes of one model over splits of one data set with the evaluation options.

    Args:
        classifier: the loaded model and its preprocessing.
        args: batch size, workers, progress bars.
    """

    def __init__(self, classifier: FlowerClassifier, args: EvaluationArguments) -> None:
        self.classifier, self.args = classifier, args
        self.eval_transform = build_eval_transform(classifier.prep)
        self._warm_up()

    @torch.inference_mode()
    def predict(
        self,
        split: datasets.Dataset,
        description: str,
        transform: ImageTransform | None = None,
        corruption: Corruptor | None = None,
    ) -> Predictions:
        """Logits of every image of ``split`` (through ``corruption``, then ``transform``: the eval one by default)."""
        loader = torch.utils.data.DataLoader(
            _Images(split, transform or self.eval_transform, corruption),
            batch_size=self.args.batch_size,
            num_workers=self.args.dataloader_num_workers,
        )
        logits, labels, model_seconds = [], [], 0.0
        start = time.perf_counter()
        for pixels, batch_labels in tqdm(loader, desc=description, disable=self.args.disable_tqdm, leave=False):
            tick = time.perf_counter()
            logits.append(self._forward(pixels))
            model_seconds += time.perf_counter() - tick
            labels.append(batch_labels)
        seconds = time.perf_counter() - start
        return Predictions(torch.cat(logits).numpy(), torch.cat(labels).numpy(), seconds, model_seconds)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Views (N, V, 3, H, W) go through the model as N·V images. Moving the logits to the CPU waits for the
        # GPU, so the time measured is the time computed.
        model, device = self.classifier.model, self.classifier.device
        logits = model(pixels.flatten(0, 1).to(device) if pixels.ndim == 5 else pixels.to(device)).logits
        logits = logits.float().cpu()
        return logits.view(*pixels.shape[:2], -1) if pixels.ndim == 5 else logits

    @torch.inference_mode()
    def _warm_up(self) -> None:
        # One-off costs (allocations, cuDNN's algorithm search) stay out of the first timed pass.
        self._forward(torch.zeros(2, 3, *self.classifier.prep.input_size))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging(True, logging.WARNING)
    args, data_args = parse_args((EvaluationArguments, DataArguments), _expand_argv(argv), prog=PROG)
    output_dir = Path(args.output_dir or Path(args.model).expanduser() / f"eval_{args.split}")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / CONFIG_FILE).write_text(yaml.safe_dump({**vars(args), **vars(data_args)}, sort_keys=False))

    # The model with its preprocessing; the data, whose classes must be the model's, in the same order.
    classifier = FlowerClassifier.from_pretrained(args.model, device=_device(args.device))
    data = load_flowers(args=data_args)
    check_class_names(data["train"].features["label"].names, classifier.class_names)
    split = _subset(data[args.split], args.max_eval_samples)
    evaluator = Evaluator(classifier, args)

    # Calibration: the one stored with the model (folded into its weights), or one fitted now on validation.
    calibration, folded = _calibration(evaluator, _subset(data["validation"], args.max_eval_samples))
    divisor = 1.0 if folded else calibration.temperature  # model logits / divisor = calibrated logits

    # The plain pass: the scores and reports of training's test pass, with calibration and latency.
    prefix = PREFIXES[args.split]
    clean = evaluator.predict(split, f"{args.split}: plain")
    metrics = plain_metrics(clean, calibration, folded, prefix, args.calibration_bins)
    write_test_report(clean.logits, clean.labels, classifier.class_names, output_dir)
    uncalibrated = _uncalibrated(clean.logits, calibration, folded)
    plot_reliability_diagram(uncalibrated, clean.labels, calibration.temperature, output_dir / RELIABILITY_PLOT)

    # Test-time augmentation: a pass of its own, timed the same way.
    if args.tta:
        views = evaluator.predict(split, f"{args.split}: TTA", transform=TTATransform(classifier.prep, args.tta_views))
        metrics |= tta_metrics(views, divisor, prefix, args.calibration_bins)

    # The corruption suite: a pass per corruption and severity.
    if args.corruptions:
        robustness = corruption_suite(evaluator, split, args, divisor, metrics[f"{prefix}_accuracy"])
        robustness = {**_suite_facts(args, classifier, len(split)), **robustness}
        (output_dir / ROBUSTNESS_FILE).write_text(json.dumps(robustness, indent=2))
        plot_robustness(robustness, output_dir / ROBUSTNESS_PLOT)
        for key in ("mean_corruption_accuracy", "relative_mean_corruption_accuracy"):
            metrics[f"{prefix}_{key}"] = robustness[key]

    (output_dir / f"{prefix}_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True))
    print(summary_text(metrics, prefix, args, data_args, calibration, len(split), output_dir))
    return metrics


def _expand_argv(argv: list[str] | None) -> list[str]:
    """``MODEL`` may come first without ``--model``; the run's own data options go first, as defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--model", argv[0], *argv[1:]]
    model, _ = _model_parser().parse_known_args(argv)
    return [*_run_data_options(model.model), *argv]


def _model_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    return parser


def _run_data_options(model: str | None) -> list[str]:
    """The data options a run was trained with (its ``train_config.yaml``), as command-line flags."""
    path = Path(model or "").expanduser() / TRAIN_CONFIG_FILE
    if not model or not path.is_file():
        return []
    saved = yaml.safe_load(path.read_text()) or {}
    names = [f.name for f in dataclasses.fields(DataArguments)]
    options = {name: saved[name] for name in names if saved.get(name) is not None}
    logger.info("Data options from %s (flags override them): %s", path, options)
    return [item for name, value in options.items() for item in (f"--{name}", str(value))]


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_class_names(data_names: list[str], model_names: list[str]) -> None:
    """Refuse a data set whose class ids do not name the model's classes.

    Args:
        data_names: the data set's class names, in label id order.
        model_names: the model's, in output order.
    """
    if list(data_names) == list(model_names):
        return
    if sorted(data_names) == sorted(model_names):
        raise ClassMismatchError(
            "the data set has the model's classes in another order, so label ids would not match the model's outputs"
        )
    missing, extra = sorted(set(model_names) - set(data_names)), sorted(set(data_names) - set(model_names))
    differences = [f"the data lacks {_few(missing)}"] if missing else []
    differences += [f"the model lacks {_few(extra)}"] if extra else []
    raise ClassMismatchError(
        f"the data set's {len(data_names)} classes are not the model's {len(model_names)} "
        f"({'; '.join(differences)}). Evaluate on the data the model was trained for (--dataset; "
        "for the synthetic set the same --synthetic_num_classes)"
    )


def _few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(name) for name in names[:shown]) + more


def _subset(split: datasets.Dataset, max_samples: int | None, seed: int = 0) -> datasets.Dataset:
    if max_samples is None or max_samples >= len(split):
        return split
    indices = np.sort(np.random.default_rng(seed).choice(len(split), max_samples, replace=False))
    return split.select(indices, keep_in_memory=True)


def _calibration(evaluator: Evaluator, validation: datasets.Dataset) -> tuple[Calibration, bool]:
    """The calibration and whether its temperature is folded into the model (then its logits are calibrated)."""
    classifier, args = evaluator.classifier, evaluator.args
    stored = Calibration.from_config(classifier.model.config)
    if stored is not None:
        logger.info("Calibration stored with the model: T = %.4f, unsure threshold %s", stored.temperature,
                    "—" if stored.unsure_threshold is None else f"{stored.unsure_threshold:.4f}")  # fmt: skip
        if args.save_calibration:
            logger.warning("--save_calibration: the model is calibrated already; nothing to save")
        return stored, True
    if args.split == "validation":
        logger.warning("Calibration is fitted on the split it is evaluated on: its ECE after scaling is optimistic")
    fitting = evaluator.predict(validation, "validation: fitting calibration")
    if args.save_calibration:
        calibration = calibrate_model(classifier.model, fitting.logits, fitting.labels, args.calibration_bins)
        if Calibration.from_config(classifier.model.config) is not None:  # folded into the weights
            save_model(classifier.model, Path(args.model).expanduser(), classifier.prep)
            logger.info("Stored the calibration in %s", Path(args.model) / "config.json")
            return calibration, True
        return calibration, False
    calibration = fit_calibration(fitting.logits, fitting.labels, args.calibration_bins)
    logger.info(
        "No calibration stored with the model; fitted on validation: T = %.4f (store it with --save_calibration)",
        calibration.temperature,
    )
    return calibration, False


def _uncalibrated(logits: np.ndarray, calibration: Calibration, folded: bool) -> np.ndarray:
    """The logits before temperature scaling (the model's own, unless the temperature is folded into it)."""
    return logits * calibration.temperature if folded else logits


def _scores(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    values = ClassificationMetrics(keep_in_memory=True).compute(predictions=scores, references=labels)
    return {f"{prefix}_{key}": value for key, value in values.items()}


def plain_metrics(
    result: Predictions, calibration: Calibration, folded: bool, prefix: str, num_bins: int = NUM_BINS
) -> dict[str, Any]:
    """Training's test metrics, ECE and NLL before and after calibration, the unsure rule's effect, latency.

    Args:
        result: the plain pass.
        calibration: the temperature and threshold.
        folded: whether the model's logits are calibrated already.
        prefix: the metric prefix (``test``, ``eval``, ``train``).
        num_bins: ECE bins.
    """
    uncalibrated = _uncalibrated(result.logits, calibration, folded)
    calibrated = softmax(uncalibrated / calibration.temperature)
    labels = result.labels
    threshold = calibration.unsure_threshold
    answered = calibrated.max(axis=1) >= (threshold if threshold is not None else 0.0)
    correct = calibrated.argmax(axis=1) == labels
    return _scores(result.logits, labels, prefix) | {
        f"{prefix}_ece_uncalibrated": expected_calibration_error(softmax(uncalibrated), labels, num_bins),
        f"{prefix}_ece_calibrated": expected_calibration_error(calibrated, labels, num_bins),
        f"{prefix}_nll_uncalibrated": negative_log_likelihood(uncalibrated, labels),
        f"{prefix}_nll_calibrated": negative_log_likelihood(uncalibrated, labels, calibration.temperature),
        f"{prefix}_temperature": calibration.temperature,
        # Where the temperature was fitted (validation), as recorded with it.
        "validation_ece_uncalibrated": calibration.ece_before,
        "validation_ece_calibrated": calibration.ece_after,
        f"{prefix}_unsure_threshold": threshold,
        f"{prefix}_answered": float(answered.mean()),
        f"{prefix}_answered_accuracy": float(correct[answered].mean()) if answered.any() else None,
        f"{prefix}_ms_per_image": result.ms_per_image(),
        f"{prefix}_model_ms_per_image": result.model_ms_per_image(),
    }


def tta_metrics(result: Predictions, divisor: float, prefix: str, num_bins: int = NUM_BINS) -> dict[str, Any]:
    """Scores of the views' mean calibrated probabilities, their ECE, the number of views and latency.

    Args:
        result: the TTA pass, logits ``(n, views, classes)``.
        divisor: what turns the model's logits into calibrated ones.
        prefix: the metric prefix.
        num_bins: ECE bins.
    """
    probabilities = average_probabilities(torch.from_numpy(result.logits), divisor).double().numpy()
    return _scores(probabilities, result.labels, f"{prefix}_tta") | {
        f"{prefix}_tta_ece_calibrated": expected_calibration_error(probabilities, result.labels, num_bins),
        f"{prefix}_tta_views": int(result.logits.shape[1]),
        f"{prefix}_tta_ms_per_image": result.ms_per_image(),
        f"{prefix}_tta_model_ms_per_image": result.model_ms_per_image(),
    }


def corruption_suite(
    evaluator: Evaluator, split: datasets.Dataset, args: EvaluationArguments, divisor: float, clean_accuracy: float
) -> dict[str, Any]:
    """Accuracy and calibrated ECE per corruption and severity, summarised as in ``robustness.json``.

    Args:
        evaluator: runs the passes.
        split: the images.
        args: which corruptions and severities, the seed, the ECE bins.
        divisor: what turns the model's logits into calibrated ones.
        clean_accuracy: accuracy on the same images uncorrupted.
    """
    # Every pass starts from timm's eval resize, which the corruptions and then the eval transform leave the size
    # of: decoding and resizing each image once, not once per pass, gives the same inputs in a fraction of the time.
    prep = evaluator.classifier.prep
    split = cache_images(split, eval_resize(prep), "Decoding and resizing once for the suite")
    accuracy: dict[str, dict[int, float]] = {}
    ece: dict[str, dict[int, float]] = {}
    for name in args.corruption_names or list(CORRUPTIONS):
        accuracy[name], ece[name] = {}, {}
        for severity in sorted(args.severities):
            corruption = CorruptionTransform(evaluator.classifier.prep, name, severity, args.corruption_seed)
            result = evaluator.predict(split, f"{name} {severity}", corruption=corruption)
            probabilities = softmax(result.logits / divisor)
            accuracy[name][severity] = float(np.mean(probabilities.argmax(axis=1) == result.labels))
            ece[name][severity] = expected_calibration_error(probabilities, result.labels, args.calibration_bins)
        logger.info("%s: accuracy by severity %s", name, {s: round(a, 4) for s, a in accuracy[name].items()})
    return robustness_summary(clean_accuracy, accuracy, ece)


def _suite_facts(args: EvaluationArguments, classifier: FlowerClassifier, num_images: int) -> dict[str, Any]:
    return {
        "model": args.model,
        "split": args.split,
        "num_images": num_images,
        "seed": args.corruption_seed,
        "severities": sorted(args.severities),
        "corrupted_at": "the eval resize (shorter side input_size / crop_pct), before the centre crop",
        "input_size": list(classifier.prep.input_size),
    }


def summary_text(
    metrics: dict[str, Any],
    prefix: str,
    args: EvaluationArguments,
    data_args: DataArguments,
    calibration: Calibration,
    num_images: int,
    output_dir: Path,
) -> str:
    """The few numbers to read first, for the terminal."""
    m = {key.removeprefix(f"{prefix}_"): value for key, value in metrics.items()}
    lines = [
        f"{args.model} on {data_args.dataset} / {args.split}: {num_images:,} images; results in {output_dir}",
        f"  accuracy            {m['accuracy']:7.2%}   top-5 {m['top5_accuracy']:.2%}, "
        f"{m['ms_per_image']:.2f} ms/image ({m['model_ms_per_image']:.2f} in the model)",
    ]
    if "mean_corruption_accuracy" in m:
        count = len(args.corruption_names or CORRUPTIONS)
        lines.append(
            f"  corrupted accuracy  {m['mean_corruption_accuracy']:7.2%}   mean of {count} corruptions × "
            f"{len(args.severities)} severities, {m['relative_mean_corruption_accuracy'] or 0:.0%} of clean"
        )
    if "tta_accuracy" in m:
        gain = 100 * (m["tta_accuracy"] - m["accuracy"])
        lines.append(
            f"  TTA accuracy        {m['tta_accuracy']:7.2%}   {gain:+.2f} points with {m['tta_views']} views "
            f"({args.tta_views}): {m['tta_ms_per_image']:.2f} vs {m['ms_per_image']:.2f} ms/image "
            f"(×{m['tta_ms_per_image'] / m['ms_per_image']:.1f}; model only {m['tta_model_ms_per_image']:.2f} vs "
            f"{m['model_ms_per_image']:.2f})"
        )
    lines.append(
        f"  ECE ({args.calibration_bins} bins)       {m['ece_uncalibrated']:.4f} before -> {m['ece_calibrated']:.4f} "
        f"after temperature scaling (T = {calibration.temperature:.3f}; on {calibration.fitted_on}, where it was "
        f"fitted: {calibration.ece_before:.4f} -> {calibration.ece_after:.4f})"
    )
    if calibration.unsure_threshold is not None:
        answered_accuracy = m["answered_accuracy"]
        lines.append(
            f"  unsure below        {calibration.unsure_threshold:.4f}   top-1 probability: {m['answered']:.1%} of "
            f"images answered, {answered_accuracy or 0:.1%} of those right"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
