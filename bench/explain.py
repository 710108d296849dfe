"""What the demo's "why" view costs: the Grad-CAM heat map of the top class beside the prediction, and what one
whole click on Classify costs (the answer, the verdict, the model's view, the heat map), in one run.

    python bench/explain.py --model runs/quickstart                      # a run folder (quickstart: ResNet18, 64 px)
    python bench/explain.py --architecture resnet18 --image_size 224     # a fresh ResNet18 with 102 classes
    python bench/explain.py --model runs/quickstart --runs 100

Each round times ``ImageClassifier.predict`` (what ``/predict`` runs) and then ``HeatMapper`` (what the demo adds
after the answer is shown), on the same 500×375 photo, so that both see the same load on a shared machine; then
one click two ways: ``click``, the events of ``demo/app.py``'s Classify button as the page runs them (its own
functions, the upload in Gradio's upload folder), and ``click_before``, the same click as the demo ran it up to
commit e1b5be1, where each event opened and preprocessed the upload itself (3 decodes, 4 preprocessings). Each
reports how often it decoded and preprocessed the photo. Wall and CPU milliseconds (CPU time counts both of
torch's threads, and varies less with the machine's load). A table goes to stdout, then the figures as one JSON
object on the last line. Run from an older checkout, ``click`` times that commit's demo.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import inspect
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.images import open_image
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.explain import HeatMapper, grad_cam, overlay

if __name__ == "__main__":  # python bench/explain.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import ExplainBenchArguments
from bench.load import sample_photo
from bench.timing import machine, milliseconds, percentile

WARMUP = 5
ROOT = Path(__file__).resolve().parents[1]
WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")  # as the demo's


def cpu_milliseconds(function: Callable[[], Any]) -> float:
    """CPU milliseconds of one call of ``function``, every thread of this process."""
    start = time.process_time()
    function()
    return (time.process_time() - start) * 1000


def time_heat_map(classifier: ImageClassifier, photo: Path, runs: int) -> dict[str, float]:
    """p50 and p95 wall and CPU milliseconds of the prediction and of the heat map, timed in turn, and of one click
    on the demo (``click``) and of the same click as the demo ran it before (``click_before``)."""
    mapper = HeatMapper(classifier)
    top = next(iter(classifier.predict(photo, top_k=1)))
    app = demo_app()
    demo = app.build_demo(classifier)
    upload = {"path": str(photo), "meta": {"_type": "gradio.FileData"}}  # as the page sends it
    calls = {
        "predict": lambda: classifier.predict(photo),
        "heat_map": lambda: mapper(open_image(photo), top),
        "click": lambda: run_click(demo, upload),
        "click_before": lambda: click_before(app, classifier, mapper, upload),
    }
    times: dict[str, list[float]] = {f"{name}_{kind}": [] for name in calls for kind in ("ms", "cpu_ms")}
    for run in range(-WARMUP, runs):
        for name, call in calls.items():
            wall, cpu = milliseconds(call), cpu_milliseconds(call)
            if run >= 0:
                times[f"{name}_ms"].append(wall)
                times[f"{name}_cpu_ms"].append(cpu)
    figures = {f"{key}_p{q}": round(percentile(values, q), 2) for key, values in times.items() for q in (50, 95)}
    figures["heat_map_over_predict_cpu"] = round(figures["heat_map_cpu_ms_p50"] / figures["predict_cpu_ms_p50"], 2)
    for name in ("click", "click_before"):
        figures[f"{name}_decodes"], figures[f"{name}_preprocessings"] = counted(app, classifier, calls[name])
    return figures


def demo_app() -> Any:
    """``demo/app.py`` of the checkout this script lies in, as a module."""
    spec = importlib.util.spec_from_file_location("flowers_demo_bench", ROOT / "demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def run_click(demo: gr.Blocks, upload: dict[str, Any]) -> dict[int, Any]:
    """One click on Classify, as the page runs it: the event the button triggers, then each that follows the one
    before (``.then``), each given its inputs' values (the photo; a label as the page sends it back); returns each
    output's value, by component id."""
    button = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "classify")
    event = next(fn for fn in demo.fns.values() if (button._id, "click") in fn.targets)
    photo = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "photo")
    values: dict[int, Any] = {photo._id: upload}
    read = {block._id for fn in demo.fns.values() for block in fn.inputs}
    while event is not None:
        inputs = [values.get(block._id) for block in event.inputs]
        result = event.fn(*([value] for value in inputs) if event.batch else inputs)
        result = asyncio.run(result) if inspect.isawaitable(result) else result
        outputs = [column[0] for column in result] if event.batch else [result]
        for block, value in zip(event.outputs, outputs, strict=True):
            # What a later event reads comes back from the page as the component sent it (a label: a dict).
            values[block._id] = block.postprocess(value).model_dump() if block._id in read else value
        event = next((fn for fn in demo.fns.values() if fn.trigger_after == event._id), None)
    return values


def click_before(app: Any, classifier: ImageClassifier, mapper: HeatMapper, upload: dict[str, Any]) -> None:
    """One click as ``demo/app.py`` ran it up to e1b5be1: /predict (on the demo's worker thread, as its batch
    function ran), the verdict, the model's view and the heat map each opened the upload, and the heat map
    preprocessed it twice (for Grad-CAM and for the view under it)."""

    def predict() -> tuple[dict[str, float], float]:
        return classifier.predict_and_score_batch([app.load_photo(upload)], top_k=app.TOP_K)[0]

    top, score = asyncio.run(app.within(app.REQUEST_TIMEOUT_S, WORKER, predict))
    app.verdict(classifier, top, score)
    app.enlarged(classifier.model_view(app.load_photo(upload)))
    image = app.load_photo(upload)
    pixels = classifier.preprocess(image)[None]
    with mapper._lock:
        heat = grad_cam(mapper.model, mapper.layer, pixels, classifier.class_names.index(next(iter(top))))
    app.enlarged(overlay(classifier.model_view(image), heat))


def counted(app: Any, classifier: ImageClassifier, call: Callable[[], Any]) -> tuple[int, int]:
    """How often one ``call`` decodes the photo (``open_image``, as the demo and this script call it) and runs the
    classifier's eval preprocessing."""
    counts = [0, 0]

    def counting(index: int, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[index] += 1
            return function(*args, **kwargs)

        return wrapper

    opened, transform = app.open_image, classifier._transform
    app.open_image = globals()["open_image"] = counting(0, opened)
    classifier._transform = counting(1, transform)
    try:
        call()
    finally:
        app.open_image = globals()["open_image"] = opened
        classifier._transform = transform
    return counts[0], counts[1]


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
    upload_folder = Path(get_upload_folder())
    upload_folder.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="flowers_explain_") as tmp,
        tempfile.TemporaryDirectory(prefix="flowers_explain_", dir=upload_folder) as uploaded,
    ):  # the demo classifies only what lies in Gradio's upload folder
        classifier = load_classifier(args, Path(tmp))
        photo = shutil.copy(sample_photo(Path(tmp) / "photo.jpg"), uploaded)
        figures = time_heat_map(classifier, Path(photo), args.runs)
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
    for name in ("click", "click_before"):
        print(
            f"{name}: {figures[f'{name}_ms_p50']:.1f} ms (CPU {figures[f'{name}_cpu_ms_p50']:.1f}) p50, "
            f"{figures[f'{name}_ms_p95']:.1f} ms p95; {figures[f'{name}_decodes']} decode(s), "
            f"{figures[f'{name}_preprocessings']} preprocessing(s)"
        )
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
