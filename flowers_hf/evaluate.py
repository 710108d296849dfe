"""Re-evaluate a saved model: training's test pass, calibration, test-time augmentation and a corruption suite.

    python -m flowers_hf.evaluate runs/quickstart --dataset synthetic --split test
    python -m flowers_hf.evaluate runs/quickstart --dataset synthetic --split test --corruptions --tta
    python -m flowers_hf.evaluate runs/r18 --dataset /data/oxford-flowers102 --corruptions --device cuda
    python -m flowers_hf.evaluate user/flowers-r18 --dataset dpdl-benchmark/oxford_flowers102 --output_dir runs/r18_eval
    python -m flowers_hf.evaluate runs/r18 --corruptions --push_results user/flowers-r18   # into the published card
    python -m flowers_hf.evaluate runs/quickstart --ood synthetic_ood   # images of none of the classes

Writes to --output_dir (default: MODEL/eval_<split>) what training's test pass writes: test_results.json
(eval_results.json for --split validation) with the calibration and, with --tta, the TTA scores and latencies,
classification_report.json, confusion_matrix.png, per_class_accuracy.png, confusions.json and top_mistakes.png;
plus reliability_diagram.png, evaluate_config.yaml, with --corruptions robustness.json and robustness.png, and with
--ood ood.json and ood_scores.png (their figures also in the card; the recommended rule in config.json). The
scores go into the model-index of MODEL/README.md (a run folder's card) and, with --push_results, of a published
repository's card. Data options not given default to those the run was trained with (its train_config.yaml).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.cache import cache_images
from flowers_hf.data.identity import SYNTHETIC_OOD, DatasetIdentity
from flowers_hf.data.image_set import load_image_set
from flowers_hf.data.labels import check_class_names
from flowers_hf.data.subset import sample_split
from flowers_hf.data.transforms import ImageTransform, build_eval_transform, eval_crop
from flowers_hf.data.tta import TTATransform
from flowers_hf.data.validate import drop_bad_images
from flowers_hf.evaluation.arguments import PREFIXES, EvaluationArguments
from flowers_hf.evaluation.calibration import Calibration
from flowers_hf.evaluation.corruptions import CORRUPTIONS
from flowers_hf.evaluation.evaluator import Evaluator, resolve_calibration, uncalibrated
from flowers_hf.evaluation.ood import open_set_report, score_pairs, store_rule, summary_lines
from flowers_hf.evaluation.scoring import score_split, score_views
from flowers_hf.evaluation.suite import CORRUPTED_AT, corruption_suite
from flowers_hf.model.modeling import save_model
from flowers_hf.reporting.model_card import evaluation_results, update_model_card
from flowers_hf.reporting.plots import plot_reliability_diagram, plot_robustness
from flowers_hf.reporting.publish import check_push_access, push_results
from flowers_hf.reporting.run_folder import (
    EVALUATE_CONFIG_FILE,
    RELIABILITY_PLOT,
    ROBUSTNESS_FILE,
    ROBUSTNESS_PLOT,
    write_open_set,
    write_test_report,
)
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.run import load_run, run_data_options

logger = logging.getLogger("flowers_hf.evaluate")

PROG = "python -m flowers_hf.evaluate"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args, data_args = parse_args((EvaluationArguments, DataArguments), _expand_argv(argv), prog=PROG)
    output_dir = Path(args.output_dir or Path(args.model).expanduser() / f"eval_{args.split}")
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.push_results:
        check_push_access(args.push_results)  # now, not after the evaluation
    (output_dir / EVALUATE_CONFIG_FILE).write_text(yaml.safe_dump({**vars(args), **vars(data_args)}, sort_keys=False))

    # The model with its preprocessing; the data, whose classes must be the model's, in the same order. As train.py
    # does: images that cannot be decoded are listed in OUTPUT_DIR/bad_images.json and left out (or, with
    # --on_bad_image error, stop the command before any pass).
    classifier = load_run(args.model, device=_device(args.device)).classifier
    loaded = load_data(args=data_args)
    workers = args.dataloader_num_workers or None
    data = drop_bad_images(loaded.splits, data_args.on_bad_image, output_dir, num_proc=workers)
    check_class_names(data["train"].features["label"].names, classifier.class_names)
    split, validation = (sample_split(data[name], args.max_eval_samples) for name in (args.split, "validation"))
    evaluator = Evaluator(classifier, args.batch_size, args.dataloader_num_workers, args.disable_tqdm)

    # Calibration (the one stored with the model, or one fitted now on validation), then the plain pass: the scores
    # and reports of training's test pass (flowers_hf.evaluation.scoring), and latency.
    plain = plain_inputs(classifier, split, validation, data_args.cache_images)
    calibration, folded = calibrate(evaluator, plain, args)
    divisor = 1.0 if folded else calibration.temperature  # model logits / divisor = calibrated logits
    prefix = PREFIXES[args.split]
    clean = evaluator.predict(plain.split, f"{args.split}: plain", transform=plain.transform)
    logits = uncalibrated(clean.logits, calibration, folded)
    metrics = score_split(logits, clean.labels, calibration, prefix, args.calibration_bins) | clean.timings(prefix)
    write_test_report(clean.logits, clean.labels, classifier.class_names, output_dir, split, classifier.prep, divisor)
    plot_reliability_diagram(logits, clean.labels, calibration.temperature, output_dir / RELIABILITY_PLOT)

    # Test-time augmentation and the corruption suite: passes of their own; images of none of the classes.
    if args.tta:
        metrics |= measure_tta(evaluator, split, args, divisor)
    if args.corruptions:
        metrics |= measure_corruptions(evaluator, split, args, divisor, metrics[f"{prefix}_accuracy"], output_dir)
    known = (logits, clean.labels)
    open_set = measure_open_set(evaluator, args, data_args, validation, known, calibration, folded, output_dir)

    (output_dir / f"{prefix}_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True))
    publish_results(metrics, args, loaded.identity, output_dir)
    print(summary_text(metrics, prefix, args, data_args, calibration, len(split), output_dir))
    if open_set is not None:
        print("\n".join(summary_lines(open_set)))
    return metrics


@dataclass
class PlainInputs:
    """The evaluated split and validation as the plain passes read them, and the transform for them."""

    split: datasets.Dataset
    validation: datasets.Dataset
    transform: ImageTransform | None  # None: the classifier's own eval transform


def plain_inputs(
    classifier: ImageClassifier, split: datasets.Dataset, validation: datasets.Dataset, cached: bool
) -> PlainInputs:
    """With ``--cache_images``, the decoded, centre-cropped copy train.py made (the same inputs bit for bit): made
    now if it is not there, and reused by the next evaluation; else the splits as they are."""
    if not cached:
        return PlainInputs(split, validation, None)
    crop = eval_crop(classifier.prep)
    split, validation = (cache_images(s, crop, "Decoding and cropping once") for s in (split, validation))
    return PlainInputs(split, validation, build_eval_transform(classifier.prep, cropped=True))


def calibrate(evaluator: Evaluator, plain: PlainInputs, args: EvaluationArguments) -> tuple[Calibration, bool]:
    """The calibration stored with the model (folded into its weights), or one fitted now on validation (stored
    with ``--save_calibration``); and whether it is folded in."""
    if args.split == "validation" and Calibration.from_config(evaluator.classifier.model.config) is None:
        logger.warning("Calibration is fitted on the split it is evaluated on: its ECE after scaling is optimistic")
    save_to = Path(args.model).expanduser() if args.save_calibration else None
    return resolve_calibration(evaluator, plain.validation, save_to, args.calibration_bins, plain.transform)


def measure_tta(
    evaluator: Evaluator, split: datasets.Dataset, args: EvaluationArguments, divisor: float
) -> dict[str, Any]:
    """``--tta``: the scores of the averaged views, and their latency, timed as the plain pass is."""
    prefix = PREFIXES[args.split]
    transform = TTATransform(evaluator.classifier.prep, args.tta_views)
    views = evaluator.predict(split, f"{args.split}: TTA", transform=transform)
    scores = score_views(views.logits, views.labels, divisor, prefix, args.calibration_bins)
    return scores | views.timings(f"{prefix}_tta")


def measure_corruptions(
    evaluator: Evaluator,
    split: datasets.Dataset,
    args: EvaluationArguments,
    divisor: float,
    clean_accuracy: float,
    output_dir: Path,
) -> dict[str, Any]:
    """``--corruptions``: a pass per corruption and severity; ``robustness.json`` and its plot; the mean corrupted
    accuracy, absolute and relative to clean, as metrics."""
    robustness = corruption_suite(
        evaluator, split, divisor, clean_accuracy, args.corruption_names, args.severities, args.corruption_seed,
        args.calibration_bins,
    )  # fmt: skip
    robustness = {**_suite_facts(args, evaluator.classifier, len(split)), **robustness}
    (output_dir / ROBUSTNESS_FILE).write_text(json.dumps(robustness, indent=2))
    plot_robustness(robustness, output_dir / ROBUSTNESS_PLOT)
    prefix = PREFIXES[args.split]
    return {
        f"{prefix}_{key}": robustness[key] for key in ("mean_corruption_accuracy", "relative_mean_corruption_accuracy")
    }


def measure_open_set(
    evaluator: Evaluator,
    args: EvaluationArguments,
    data_args: DataArguments,
    validation: datasets.Dataset,
    known: tuple[np.ndarray, np.ndarray],
    calibration: Calibration,
    folded: bool,
    output_dir: Path,
) -> dict[str, Any] | None:
    """``--ood``: ``ood.json`` and ``ood_scores.png`` in the output folder and their section in the run's card; the
    recommended rule into the model folder's ``config.json`` (``--save_open_set_rule``). ``None`` without ``--ood``.

    Args:
        evaluator: runs the passes.
        args: the evaluation options.
        data_args: the data options (the synthetic sets' size and seed apply to the built-in unknown images).
        validation: the split the thresholds are chosen on.
        known: uncalibrated ``(logits, labels)`` of the evaluated split.
        calibration: the calibration the scores are read with.
        folded: whether its temperature is in the model's weights.
        output_dir: where the files go.
    """
    if not args.ood:
        return None
    unknown_images = sample_split(load_image_set(args.ood, data_args), args.max_eval_samples)
    unknown = uncalibrated(evaluator.predict(unknown_images, "unknown images").logits, calibration, folded)
    fitting = evaluator.predict(validation, "validation: open-set thresholds")
    thresholds_on = (uncalibrated(fitting.logits, calibration, folded), fitting.labels)
    source = f"{SYNTHETIC_OOD} (built-in shapes, textures and scenes)" if args.ood == SYNTHETIC_OOD else args.ood
    report = open_set_report(known, thresholds_on, unknown, calibration, source, args.split)
    model_dir = Path(args.model).expanduser()
    whole = args.max_eval_samples is None
    stored = args.save_open_set_rule and whole and model_dir.is_dir() and store_rule(evaluator.classifier.model, report)
    if stored:
        save_model(evaluator.classifier.model, model_dir, evaluator.classifier.prep)
        logger.info("Stored the open-set rule in %s", model_dir / "config.json")
    report["rule_stored"] = bool(stored)
    card_dir = model_dir if args.update_card and whole and model_dir.is_dir() else None
    write_open_set(report, score_pairs(known[0], unknown, calibration.temperature), output_dir, card_dir)
    return report


def publish_results(
    metrics: dict[str, Any], args: EvaluationArguments, dataset: DatasetIdentity, output_dir: Path
) -> None:
    """The scores into the model-index of the run folder's card (``--update_card``) and of a published repository's
    (``--push_results``, with the output folder's files)."""
    suite = {"corruptions": sorted(args.corruption_names or CORRUPTIONS), "severities": sorted(args.severities)}
    measured_with = {"tta_accuracy": {"views": args.tta_views}}
    measured_with |= {"mean_corruption_accuracy": suite, "relative_mean_corruption_accuracy": suite}
    results = evaluation_results(metrics, PREFIXES[args.split], args.split, dataset, measured_with)
    card = Path(args.model).expanduser() / "README.md"
    if args.update_card and card.is_file():
        if args.max_eval_samples is None:
            update_model_card(card, results)
        else:
            logger.info("Not adding the scores to %s: they are of a subset (--max_eval_samples)", card)
    if args.push_results:
        push_results(output_dir, args.push_results, results, f"eval_{args.split}")


def _expand_argv(argv: list[str] | None) -> list[str]:
    """``MODEL`` may come first without ``--model``; the run's own data options go first, as defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--model", argv[0], *argv[1:]]
    model, _ = _model_parser().parse_known_args(argv)
    options = run_data_options(model.model)
    return [*(item for name, value in options.items() for item in (f"--{name}", str(value))), *argv]


def _model_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    return parser


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _suite_facts(args: EvaluationArguments, classifier: ImageClassifier, num_images: int) -> dict[str, Any]:
    return {
        "model": args.model,
        "split": args.split,
        "num_images": num_images,
        "seed": args.corruption_seed,
        "severities": sorted(args.severities),
        "corrupted_at": CORRUPTED_AT,
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
