"""Does distillation help, and what does the small model cost to serve: a strong teacher, then a small student
trained with and without it on the same budget, over several seeds, on the built-in synthetic set; the int8 CPU
latency of the distilled student beside the teacher's.

    python bench/distill.py                              # 102 synthetic classes at 64 px, 3 seeds (~30 min, 2 cores)
    python bench/distill.py --seeds 0 --student_epochs 2 # a quick look

The teacher is ``configs/quickstart.yaml``'s ResNet18 trained ``--teacher_epochs`` (three times the quickstart's
8); each student is ``--student_model`` (ResNet10-T: about half of ResNet18's compute) trained the quickstart's
budget, plainly and with ``--teacher``, seed by seed. Every run is a ``train.py`` command in a subprocess, logged
with its command; a finished run folder is reused when the script runs again (train.py trains nothing then). Then
the teacher and the first distilled student are exported to int8 ONNX (``python -m flowers_hf.export``), and
``ImageClassifier.predict`` of a 500×375 JPEG is timed for both, interleaved. A table goes to stdout, then the
figures as one JSON object on the last line.
"""

from __future__ import annotations

import datetime
import json
import logging
import shlex
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

if __name__ == "__main__":  # python bench/distill.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import DistillBenchArguments
from bench.clients import sample_photo
from bench.timing import machine, milliseconds, percentile
from flowers_hf.core.cli import setup_logging
from flowers_hf.data.images import open_image
from flowers_hf.serving.classifier import ImageClassifier

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
PRESET = "configs/quickstart.yaml"
WARMUP = 5


def train_run(output: Path, flags: list[str]) -> dict[str, Any]:
    """``train.py --config configs/quickstart.yaml FLAGS --output_dir OUTPUT`` (nothing trained again when the folder
    holds a finished run); its test accuracy, wall time and command."""
    command = [sys.executable, "train.py", "--config", PRESET, *flags, "--report_to", "none", "--disable_tqdm",
               "true", "--output_dir", str(output)]  # fmt: skip
    logger.info("%s", shlex.join(command))
    seconds = milliseconds(partial(subprocess.run, command, cwd=ROOT, check=True, stdout=sys.stderr)) / 1000
    test = json.loads((output / "test_results.json").read_text())
    return {
        "test_accuracy": round(test["test_accuracy"], 4),
        "wall_s": round(seconds, 1),
        "command": shlex.join(["python", *command[1:]]),
    }


def export_int8(run: Path, eval_samples: int) -> None:
    """``python -m flowers_hf.export RUN --format onnx --quantize int8``, compared on ``eval_samples`` test images."""
    command = [sys.executable, "-m", "flowers_hf.export", str(run), "--format", "onnx", "--quantize", "int8",
               "--max_eval_samples", str(eval_samples)]  # fmt: skip
    logger.info("%s", shlex.join(command))
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)


def int8_latency(runs: dict[str, Path], photo: Path, rounds: int) -> dict[str, float]:
    """p50 milliseconds of each run's int8 export: ``ImageClassifier.predict`` on ``photo`` (decoding and
    preprocessing included, as the demo answers) and the model alone on the ready input; interleaved, so that every
    model sees the same load."""
    classifiers = {name: ImageClassifier.from_pretrained(run, backend="onnx-int8") for name, run in runs.items()}
    inputs = {name: classifier.prepare(open_image(photo)) for name, classifier in classifiers.items()}
    times: dict[str, list[float]] = {f"{name}_int8{kind}": [] for name in runs for kind in ("", "_forward")}
    for round_ in range(-WARMUP, rounds):
        for name, classifier in classifiers.items():
            predict = milliseconds(partial(classifier.predict, photo))
            forward = milliseconds(partial(classifier.logits, inputs[name]))
            if round_ >= 0:
                times[f"{name}_int8"].append(predict)
                times[f"{name}_int8_forward"].append(forward)
    return {f"{key}_ms_p50": round(percentile(values, 50), 2) for key, values in times.items()}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, minimum and maximum."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "sd": round(sd, 4), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(DistillBenchArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    out = Path(args.output_dir)
    data = ["--synthetic_num_classes", str(args.num_classes)]
    teacher_dir = out / "teacher"
    teacher = train_run(teacher_dir, [*data, "--num_train_epochs", str(args.teacher_epochs), "--seed", "0"])
    student = [*data, "--model", args.student_model, "--num_train_epochs", str(args.student_epochs)]
    distill = ["--teacher", str(teacher_dir), "--distill_alpha", str(args.alpha), "--distill_temperature",
               str(args.temperature)]  # fmt: skip
    plain, distilled = {}, {}
    for seed in args.seeds:
        plain[seed] = train_run(out / f"plain_seed{seed}", [*student, "--seed", str(seed)])
        distilled[seed] = train_run(out / f"distilled_seed{seed}", [*student, "--seed", str(seed), *distill])

    first = out / f"distilled_seed{args.seeds[0]}"
    for run in (teacher_dir, first):
        export_int8(run, args.export_eval_samples)
    latency = int8_latency({"teacher": teacher_dir, "student": first}, sample_photo(out / "photo.jpg"), args.rounds)
    summary = {
        "teacher": teacher,
        "plain": {str(seed): run for seed, run in plain.items()},
        "distilled": {str(seed): run for seed, run in distilled.items()},
        "plain_test_accuracy": spread([run["test_accuracy"] for run in plain.values()]),
        "distilled_test_accuracy": spread([run["test_accuracy"] for run in distilled.values()]),
        "gain_per_seed": {str(s): round(distilled[s]["test_accuracy"] - plain[s]["test_accuracy"], 4) for s in plain},
        **latency,
        "settings": {key: value for key, value in vars(args).items() if key != "output_dir"},
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
    }
    _print_table(summary)
    print(json.dumps(summary))
    return summary


def _print_table(summary: dict[str, Any]) -> None:
    plain, distilled = summary["plain_test_accuracy"], summary["distilled_test_accuracy"]
    teacher_ms, student_ms = (f"{summary[f'{m}_int8_ms_p50']:.2f} / {summary[f'{m}_int8_forward_ms_p50']:.2f}"
                              for m in ("teacher", "student"))  # fmt: skip
    rows = [
        ("teacher", f"{summary['teacher']['test_accuracy']:.4f}", teacher_ms),
        ("student, labels only", f"{plain['mean']:.4f} ± {plain['sd']:.4f}", ""),
        ("student, distilled", f"{distilled['mean']:.4f} ± {distilled['sd']:.4f}", student_ms),
    ]
    print("| model | test accuracy (mean ± sd over seeds) | int8 ms p50: predict / model alone |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
