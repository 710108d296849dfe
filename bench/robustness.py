"""The plain recipe against the robust one on the corruption suite: train both, evaluate both, one table.

    python bench/robustness.py                                  # quickstart presets, 16 epochs, 1,020 test images
    python bench/robustness.py --epochs 8 --max_eval_samples 300 --output_dir runs/compare_small
    python bench/robustness.py --plain configs/resnet18.yaml --robust configs/robust.yaml --dataset /data/flowers

Each recipe is trained with ``train.py --config PRESET`` (same model, epochs and schedule; the presets differ only in
the robustness options: strong augmentation, mixup/CutMix, label smoothing, EMA) and re-evaluated with
``python -m flowers_hf.evaluate RUN --corruptions --tta`` on the same test images. A run folder that already holds
a finished model is evaluated as it is, not trained again. The table goes to stdout, then the figures as one JSON
object on the last line.
"""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

ROOT = Path(__file__).resolve().parents[1]
# Per recipe, from the evaluation's test_results.json (test_ prefix dropped) and robustness.json.
COLUMNS = {
    "accuracy": "clean accuracy",
    "mean_corruption_accuracy": "corrupted accuracy (mean)",
    "relative_mean_corruption_accuracy": "corrupted / clean",
    "tta_accuracy": "TTA accuracy",
    "ece_uncalibrated": "ECE before calibration",
    "ece_calibrated": "ECE after calibration",
}


@dataclass
class CompareArguments:
    plain: str = field(default="configs/quickstart.yaml", metadata={"help": "The plain recipe's preset."})
    robust: str = field(default="configs/quickstart_robust.yaml", metadata={"help": "The robust recipe's preset."})
    dataset: str = field(default="synthetic", metadata={"help": "Data source of both runs and of the evaluation."})
    epochs: float = field(default=16, metadata={"help": "Training epochs of both recipes."})
    max_eval_samples: int | None = field(
        default=1020, metadata={"help": "Seeded subset of the test split (the suite runs 61 passes over it)."}
    )
    output_dir: str = field(default="runs/compare", metadata={"help": "Holds the two runs: plain/ and robust/."})


def run(command: list[str]) -> None:
    print("$ " + shlex.join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def train(args: CompareArguments, preset: str, output_dir: Path) -> None:
    """``train.py`` with the preset, unless ``output_dir`` already holds its finished model."""
    if (output_dir / "test_results.json").is_file():
        print(f"{output_dir} holds a finished run: evaluating it as it is", file=sys.stderr)
        return
    run([sys.executable, "train.py", "--config", preset, "--dataset", args.dataset,
         "--num_train_epochs", str(args.epochs), "--output_dir", str(output_dir)])  # fmt: skip


def evaluate(args: CompareArguments, run_dir: Path) -> dict[str, Any]:
    """The evaluation's headline figures and the corruption accuracies of one run."""
    eval_dir = run_dir / "eval_compare"
    subset = ["--max_eval_samples", str(args.max_eval_samples)] if args.max_eval_samples else []
    run([sys.executable, "-m", "flowers_hf.evaluate", str(run_dir), "--dataset", args.dataset, "--split", "test",
         "--corruptions", "--tta", "--output_dir", str(eval_dir), "--disable_tqdm", "true", *subset])  # fmt: skip
    metrics = json.loads((eval_dir / "test_results.json").read_text())
    robustness = json.loads((eval_dir / "robustness.json").read_text())
    return {
        **{key: metrics[f"test_{key}"] for key in COLUMNS},
        "images": robustness["num_images"],
        "per_corruption": {name: entry["mean_accuracy"] for name, entry in robustness["corruptions"].items()},
    }


def format_table(results: dict[str, dict[str, Any]]) -> str:
    recipes = list(results)
    lines = [f"{'':<28}" + "".join(f"{name:>10}" for name in recipes) + f"{'robust - plain':>16}"]
    for key, title in [*COLUMNS.items(), *((name, name) for name in results[recipes[0]]["per_corruption"])]:
        values = [results[name].get(key, results[name]["per_corruption"].get(key)) for name in recipes]
        lines.append(f"{title:<28}" + "".join(f"{v:>10.3f}" for v in values) + f"{values[1] - values[0]:>+16.3f}")
    return "\n".join(lines)


def main() -> None:
    (args,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses()
    output_dir = Path(args.output_dir)
    results = {}
    for name, preset in (("plain", args.plain), ("robust", args.robust)):
        train(args, preset, output_dir / name)
        results[name] = evaluate(args, output_dir / name)
    print(format_table(results))
    summary = {"date": datetime.date.today().isoformat(), "arguments": asdict(args), "results": results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
