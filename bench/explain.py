"""What the demo's "why" view costs: the Grad-CAM heat map of the top class beside the prediction, in one run.

    python bench/explain.py --model runs/quickstart                      # a run folder (quickstart: ResNet18, 64 px)
    python bench/explain.py --architecture resnet18 --image_size 224     # a fresh ResNet18 with 102 classes
    python bench/explain.py --model runs/quickstart --runs 100

Each round times ``ImageClassifier.predict`` (what ``/predict`` runs) and then ``HeatMapper`` (what the demo adds
after the answer is shown), on the same 500×375 photo, so that both see the same load on a shared machine; wall
and CPU milliseconds (CPU time counts both of torch's threads, and varies less with the machine's load). A
table goes to stdout, then the figures as one JSON object on the last line.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.images import open_image
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.explain import HeatMapper

if __name__ == "__main__":  # python bench/explain.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import sample_photo
from bench.timing import machine, milliseconds, percentile

WARMUP = 5


@dataclass
class ExplainBenchArguments:
    """The model to time, and how often."""

    model: str | None = field(default=None, metadata={"help": "A run folder or Hub id; default: --architecture."})
    architecture: str = field(default="resnet18", metadata={"help": "A timm model, random init, 102 classes."})
    image_size: int | None = field(default=None, metadata={"help": "Its input size; default: the model's own."})
    runs: int = field(default=40, metadata={"help": "Timed rounds, after 5 untimed ones."})


def cpu_milliseconds(function: Callable[[], Any]) -> float:
    """CPU milliseconds of one call of ``function``, every thread of this process."""
    start = time.process_time()
    function()
    return (time.process_time() - start) * 1000


def time_heat_map(classifier: ImageClassifier, photo: Path, runs: int) -> dict[str, float]:
    """p50 and p95 wall and CPU milliseconds of the prediction and of the heat map, timed in turn."""
    mapper = HeatMapper(classifier)
    top = next(iter(classifier.predict(photo, top_k=1)))
    # As the demo runs them: each event opens the uploaded file itself.
    calls = {"predict": lambda: classifier.predict(photo), "heat_map": lambda: mapper(open_image(photo), top)}
    times: dict[str, list[float]] = {f"{name}_{kind}": [] for name in calls for kind in ("ms", "cpu_ms")}
    for run in range(-WARMUP, runs):
        for name, call in calls.items():
            wall, cpu = milliseconds(call), cpu_milliseconds(call)
            if run >= 0:
                times[f"{name}_ms"].append(wall)
                times[f"{name}_cpu_ms"].append(cpu)
    figures = {f"{key}_p{q}": round(percentile(values, q), 2) for key, values in times.items() for q in (50, 95)}
    figures["heat_map_over_predict_cpu"] = round(figures["heat_map_cpu_ms_p50"] / figures["predict_cpu_ms_p50"], 2)
    return figures


def load_classifier(args: ExplainBenchArguments, folder: Path) -> ImageClassifier:
    """The run folder, or a fresh ``--architecture`` saved to ``folder`` as ``train.py`` saves one."""
    if args.model:
        return ImageClassifier.from_pretrained(args.model)
    model = build_model(ModelArguments(model=args.architecture, pretrained=False), list(FLOWER_NAMES))
    save_model(model, folder, resolve_preprocessing(model.timm_model, TransformArguments(image_size=args.image_size)))
    return ImageClassifier.from_pretrained(folder)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(ExplainBenchArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="flowers_explain_") as tmp:
        classifier = load_classifier(args, Path(tmp))
        figures = time_heat_map(classifier, sample_photo(Path(tmp) / "photo.jpg"), args.runs)
    height, width = classifier.prep.input_size
    summary = {
        "model": args.model or args.architecture,
        "input_size": [height, width],
        "runs": args.runs,
        "torch_threads": torch.get_num_threads(),
        **figures,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
    }
    print(
        f"{summary['model']} at {height}×{width}, {args.runs} rounds: predict {figures['predict_ms_p50']:.1f} ms "
        f"(CPU {figures['predict_cpu_ms_p50']:.1f}), heat map {figures['heat_map_ms_p50']:.1f} ms "
        f"(CPU {figures['heat_map_cpu_ms_p50']:.1f}), p50; the heat map takes "
        f"{figures['heat_map_over_predict_cpu']:.2f}× the prediction's CPU time"
    )
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
