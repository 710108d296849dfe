"""Fuzzed files (bench/fuzz_inputs.py) through the three paths a hostile image takes: ``ImageClassifier.predict``
in-process, the demo's ``/predict`` over HTTP (eight requests in flight, so that the demo batches them) and a training
folder (``python -m flowers_hf.data FOLDER``, then ``train.py --dataset FOLDER`` for one epoch).

    python bench/fuzz.py                                  # 1,000 inputs through each path: the README's figures
    python bench/fuzz.py --count 250 --paths classifier demo

Each input is answered, refused in one line, or (in a training folder) listed in ``bad_images.json`` and left out;
one that raises anything else, or is refused in more than one line, counts as crashed, one that takes longer than the
limit as hung. Each path has its own seed (classifier 1, demo 2, folder 3). The model is an untrained test_resnet for
the 102 flowers at 32 px, made for the run (what is answered or refused depends on the file, not the weights). The
counts go to stdout as one Markdown table, the demo's time and memory under it, then the figures as one JSON object on
the last line. tests/test_fuzz.py sends 250 inputs through each path with these functions.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from PIL import Image
from transformers import HfArgumentParser

if __name__ == "__main__":  # python bench/fuzz.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fuzz_inputs import OUTCOMES, fuzz_inputs, seed_files, tally
from bench.serve import make_model, serve_demo
from bench.timing import machine
from flowers_hf.core.cli import setup_logging
from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data.validate import BAD_IMAGES_FILE
from flowers_hf.serving.classifier import ImageClassifier

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("classifier", "demo", "folder")
SEED_OF = {"classifier": 1, "demo": 2, "folder": 3}  # each path its own
IN_FLIGHT = 8  # requests sent to the demo at once, so that it answers them in batches
RESENDS = 3  # at most this many requests sent again after their event stream closed (the connection, not the demo)
GOOD_PER_CLASS = 20  # good images in each class of each split of the training folder, beside the fuzzed ones
# One epoch of test_resnet at 32 px on the training folder.
FOLDER_RUN = [
    "--model", "test_resnet", "--pretrained", "false", "--image_size", "32", "--per_device_train_batch_size", "16",
    "--num_train_epochs", "1", "--dataloader_num_workers", "0", "--report_to", "none", "--disable_tqdm", "true",
]  # fmt: skip
MB = 2**20


@dataclass
class FuzzBenchArguments:
    count: int = field(default=1000, metadata={"help": "Fuzzed files through each path."})
    paths: list[str] = field(default_factory=lambda: list(PATHS), metadata={"help": "Of classifier, demo, folder."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the files, the model and the training run go (default: a temp dir)."}
    )


@dataclass
class PathOutcome:
    """What became of the inputs sent through one path: the counts (``OUTCOMES``), what crashed or hung with why,
    the names answered and the refused ones with their messages."""

    counts: Counter
    faults: dict[str, str]
    answered: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def one_line(message: str) -> str:
    """``"refused"`` for a refusal a person can read: one line, naming no server path; raises otherwise (a crash).

    Args:
        message: the refusal's message.
    """
    if "\n" in message or "/" in message:
        raise ValueError(f"a refusal of more than one line or naming a path: {message!r}")
    return "refused"


def through_the_classifier(classifier: ImageClassifier, inputs: list[tuple[str, bytes]], folder: Path) -> PathOutcome:
    """Each input written to ``folder`` and given to ``classifier.predict``: a top of every class summing to 1, or an
    ``UnreadableImageError`` in one line.

    Args:
        classifier: the classifier.
        inputs: ``(name, content)`` pairs, from :func:`fuzz_inputs`.
        folder: where the files are written.
    """
    answered, refused = set(), {}

    def attempt(name: str, content: bytes) -> str:
        path = folder / name
        path.write_bytes(content)
        try:
            top = classifier.predict(path, top_k=len(classifier.class_names))  # the whole distribution
        except UnreadableImageError as error:
            refused[name] = str(error)
            return one_line(str(error))
        if len(top) != len(classifier.class_names) or abs(sum(top.values()) - 1) >= 1e-4:
            raise ValueError(f"not a distribution over the classes: {top}")
        answered.add(name)
        return "answered"

    counts, faults = tally(inputs, attempt, limit_s=10)
    return PathOutcome(counts, faults, answered, refused)


def demo_outcome(job: Any, limit_s: float) -> str | Exception:
    """What became of one request to the demo: ``"answered"``, ``"refused"`` (a one-line message), ``"hung"``, or
    the error of a crash.

    Args:
        job: a ``gradio_client`` job of ``/predict``.
        limit_s: how long its answer may take.
    """
    from gradio_client.exceptions import AppError

    try:
        result = job.result(timeout=limit_s)
    except FutureTimeout:
        return "hung"
    except AppError as error:  # sent alone: the message as an error
        message = str(error)
    except Exception as error:  # anything else is a crash of the request (CancelledError included: see below)
        return error
    else:
        if result.get("confidences") is not None:
            return "answered" if len(result["confidences"]) == 5 else ValueError(f"not a top 5: {result}")
        message = result["label"]  # in a batch: the message as the label
    try:
        return one_line(message)
    except ValueError as error:
        return error


def through_the_demo(client: Any, inputs: list[tuple[str, bytes]], folder: Path, limit_s: float) -> PathOutcome:
    """Each input uploaded to the demo's ``/predict``, ``IN_FLIGHT`` at a time so that it answers them in batches.
    ``extra`` holds ``seconds`` (all of them) and ``sent_again`` (the names whose event stream closed before the
    answer: sent again alone).

    Args:
        client: a ``gradio_client.Client`` of the demo.
        inputs: ``(name, content)`` pairs, from :func:`fuzz_inputs`.
        folder: where the files are written for upload.
        limit_s: how long one answer may take.
    """
    from gradio_client import handle_file

    outcomes: dict[str, str | Exception] = {}
    sent_again: list[str] = []
    start = time.monotonic()
    for first in range(0, len(inputs), IN_FLIGHT):
        jobs = []
        for name, content in inputs[first : first + IN_FLIGHT]:
            (folder / name).write_bytes(content)
            jobs.append((name, client.submit(handle_file(str(folder / name)), api_name="/predict")))
        for name, job in jobs:
            outcomes[name] = demo_outcome(job, limit_s)
            if isinstance(outcomes[name], CancelledError):
                # gradio_client 2.x ends a job with CancelledError when its event stream closes before the answer
                # (seen once in a thousand on a loaded machine): the connection, not the request. Sent again alone;
                # a fault of the server would show in its log.
                sent_again.append(name)
                outcomes[name] = demo_outcome(
                    client.submit(handle_file(str(folder / name)), api_name="/predict"), limit_s
                )
    seconds = time.monotonic() - start

    def attempt(name: str, content: bytes) -> str:  # tally's callable, on the outcomes gathered above
        if isinstance(outcomes[name], Exception):
            raise outcomes[name]
        return outcomes[name]

    counts, faults = tally(inputs, attempt, limit_s=limit_s)
    return PathOutcome(counts, faults, extra={"seconds": round(seconds, 1), "sent_again": sent_again})


def through_a_training_folder(inputs: list[tuple[str, bytes]], root: Path) -> PathOutcome:
    """Two classes of ``GOOD_PER_CLASS`` good images in each split, the inputs spread over the training split's
    classes; ``python -m flowers_hf.data ROOT``, then ``train.py --dataset ROOT`` for one epoch. Answered: trained on;
    refused: listed in ``bad_images.json`` (the file and why). ``extra`` holds the data command's split sizes, the
    listed entries and the run's metrics.

    Args:
        inputs: ``(name, content)`` pairs, from :func:`fuzz_inputs`.
        root: an empty folder: the data go to ``root/data``, the run to ``root/run``.
    """
    import train  # the top level's train.py: imported here, as python bench/fuzz.py puts the root on sys.path late

    data = root / "data"
    for split in ("train", "validation", "test"):
        for class_index, name in enumerate("ab"):
            (data / split / name).mkdir(parents=True)
            for n in range(GOOD_PER_CLASS):
                Image.new("RGB", (16, 16), (200 * class_index, 10 * n, 120)).save(data / split / name / f"{n}.png")
    for i, (name, content) in enumerate(inputs):
        (data / "train" / "ab"[i % 2] / name).write_bytes(content)
    check = subprocess.run(
        [sys.executable, "-m", "flowers_hf.data", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if check.returncode != 0:
        raise RuntimeError(f"python -m flowers_hf.data {data} failed:\n{check.stderr[-3000:]}")
    metrics = train.main([*FOLDER_RUN, "--dataset", str(data), "--output_dir", str(root / "run")])
    listed = json.loads((root / "run" / BAD_IMAGES_FILE).read_text())
    refused = {Path(entry["file"]).name: entry["reason"] for entry in listed}
    answered = {name for name, _ in inputs} - set(refused)
    counts = Counter(tried=len(inputs), answered=len(answered), refused=len(refused))
    extra = {"splits": json.loads(check.stdout)["splits"], "listed": listed, "test_accuracy": metrics["test_accuracy"]}
    return PathOutcome(counts, {}, answered, refused, extra)


def fuzz_demo(count: int, model: Path, folder: Path) -> PathOutcome:
    """``count`` inputs through a demo started for the run on ``model``, with its memory (RSS) before and after.

    Args:
        count: fuzzed files.
        model: the run folder it serves.
        folder: where the files are written.
    """
    from gradio_client import Client, handle_file

    photo = folder / "photo.jpg"
    photo.write_bytes(seed_files()["photo.jpg"])
    with serve_demo(str(model)) as demo:
        client = Client(demo.url, verbose=False)
        client.predict(handle_file(str(photo)), api_name="/predict")  # warmed up: the memory before is the serving one
        process = psutil.Process(demo.pid)
        rss_before = process.memory_info().rss
        outcome = through_the_demo(client, fuzz_inputs(count, seed=SEED_OF["demo"]), folder, request_limit_s())
        outcome.extra |= {
            "rss_before_mb": round(rss_before / MB),
            "rss_after_mb": round(process.memory_info().rss / MB),
        }
    return outcome


def request_limit_s() -> float:
    """The demo ends a batch after its ``REQUEST_TIMEOUT_S``; a little more for the HTTP round trip."""
    spec = importlib.util.spec_from_file_location("flowers_demo", ROOT / "demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app.REQUEST_TIMEOUT_S + 10


def format_table(outcomes: dict[str, PathOutcome]) -> str:
    """One row per path: its counts."""
    rows = ["| path | " + " | ".join(OUTCOMES) + " |", "| --- |" + " --- |" * len(OUTCOMES)]
    for path, outcome in outcomes.items():
        rows.append(f"| {path} | " + " | ".join(str(outcome.counts[key]) for key in OUTCOMES) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(FuzzBenchArguments).parse_args_into_dataclasses(args=argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        raise SystemExit(f"--paths takes {', '.join(PATHS)}; not {', '.join(sorted(unknown))}")
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="fuzz_bench_") as scratch:
        out = Path(args.output_dir or scratch)
        model = make_model("test_resnet", 32, out / "model")
        outcomes: dict[str, PathOutcome] = {}
        for path in [p for p in PATHS if p in args.paths]:
            folder = out / path
            folder.mkdir(parents=True, exist_ok=True)
            if path == "classifier":
                inputs = fuzz_inputs(args.count, seed=SEED_OF[path])
                outcomes[path] = through_the_classifier(ImageClassifier.from_pretrained(model), inputs, folder)
            elif path == "demo":
                outcomes[path] = fuzz_demo(args.count, model, folder)
            else:
                outcomes[path] = through_a_training_folder(fuzz_inputs(args.count, seed=SEED_OF[path]), folder)
    summary = {
        "count": args.count,
        "paths": {
            path: {"counts": dict(o.counts), "faults": o.faults, **{k: v for k, v in o.extra.items() if k != "listed"}}
            for path, o in outcomes.items()
        },
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
    }
    print(format_table(outcomes))
    if "demo" in outcomes:
        demo = outcomes["demo"].extra
        print(f"\nthe demo: {demo['seconds']:.0f} s for {args.count}; RSS {demo['rss_before_mb']} MB before, "
              f"{demo['rss_after_mb']} MB after; {len(demo['sent_again'])} sent again")  # fmt: skip
    for path, outcome in outcomes.items():
        for name, why in outcome.faults.items():
            print(f"{path}: {name}: {why}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
