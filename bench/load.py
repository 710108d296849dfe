"""The demo under load: concurrent gradio_client clients calling ``/predict``, every request accounted for.

    python bench/load.py --model runs/quickstart           # starts demo/app.py on a free port, stops it at the end
    python bench/load.py --url http://127.0.0.1:7860/      # a demo that is already running
    python bench/load.py --model runs/quickstart --clients 20 --requests 10 --image rose.jpg
    python bench/load.py --model runs/quickstart --soak    # 20 clients, 1,000 requests in all: quarters, memory
    python bench/load.py --make_model resnet18 --compare_batching   # 224 px, --max_batch_size 1 against batches

Each client is a thread with its own ``gradio_client.Client``; all start together once connected and send their
requests one after another, each uploading the photo and waiting for the top 5 (the latency is upload + queue +
prediction). A request is *answered* (a top 5 came back), *failed* (an error came back, or a label without
confidences: the demo's answer for a photo of a batch it could not classify) or *lost* (nothing came back within
``--timeout`` seconds). A summary goes to stdout, then, as the last line, one JSON object. The exit status is 1 when
any request failed or was lost.

``--soak`` keeps a demo on this machine busy (loopback only) for 1,000 requests by default, at most ``--max_s``
seconds, and reports latency for each quarter of the requests and the demo process's memory (RSS, sampled every
0.2 s; with ``--url``, give its ``--pid``). ``--compare_batching`` starts the demo twice on the same model, with
``--max_batch_size 1`` and with its default, both up at once and loaded in turn (``--rounds``), and reports the
throughput of each and their ratio, the CPU time per request of the demo and of the clients (which share this
machine's CPUs), and the latency of one client alone; ``--make_model resnet18`` serves an untrained ResNet18 at
``--image_size`` (224) made for the run, which costs what a trained one does.

This file holds the order of a run; ``bench/arguments.py`` the arguments (``LoadArguments``), ``bench/clients.py``
the clients and the summary of their requests, ``bench/serve.py`` the demo started for the run, ``bench/soak.py`` the
soak, ``bench/batching.py`` the batching comparison, ``bench/load_report.py`` the printed summary.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging

if __name__ == "__main__":  # python bench/load.py puts bench/ on sys.path; the bench.* imports need the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.arguments import LoadArguments
from bench.batching import compare_batching
from bench.clients import run_load, sample_photo
from bench.load_report import all_answered, format_summary
from bench.serve import Demo, make_model, serve_demo
from bench.soak import run_soak

logger = logging.getLogger("bench.load")

REQUIRED_KEYS = (
    "clients",
    "requests_per_client",
    "sent",
    "answered",
    "failed",
    "lost",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_max",
    "wall_s",
    "throughput_req_s",
    "machine",
    "date",
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(LoadArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise

    with tempfile.TemporaryDirectory(prefix="flowers_load_") as tmp:
        photo = Path(args.image) if args.image else sample_photo(Path(tmp) / "photo.jpg")
        model = args.model or (
            str(make_model(args.make_model, args.image_size, Path(tmp) / "model")) if args.make_model else None
        )
        if args.compare_batching:
            summary, url = compare_batching(model, photo, args), "two demos on 127.0.0.1"
        else:
            with serve_demo(model) if model else nullcontext(Demo(args.url, args.pid)) as demo:
                logger.info("%d clients x %d requests to %s", args.clients, args.requests, demo.url)
                summary = (
                    run_soak(demo, photo, args.clients, args.requests, args.timeout, args.max_s)
                    if args.soak
                    else run_load(demo.url, photo, args.clients, args.requests, args.timeout)
                )
            url = demo.url
    summary["url"] = url
    summary["model"] = args.model or (
        f"{args.make_model}, untrained, {args.image_size} px" if args.make_model else None
    )
    summary["image"] = args.image or "generated 500x375 JPEG"
    print(format_summary(summary, url))
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    sys.exit(0 if all_answered(main()) else 1)
