"""The demo under load: concurrent gradio_client clients calling ``/predict``, every request accounted for.

    python bench/load.py --model runs/quickstart           # starts demo/app.py on a free port, stops it at the end
    python bench/load.py --url http://127.0.0.1:7860/      # a demo that is already running
    python bench/load.py --model runs/quickstart --clients 20 --requests 10 --image rose.jpg

Each client is a thread with its own ``gradio_client.Client``; all start together once connected and send their
requests one after another, each uploading the photo and waiting for the top 5 (the latency is upload + queue +
prediction). A request is *answered* (a top 5 came back), *failed* (an error came back) or *lost* (nothing came
back within ``--timeout`` seconds). A summary goes to stdout, then, as the last line, one JSON object. The exit
status is 1 when any request failed or was lost.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image
from transformers import HfArgumentParser

from flowers_hf.cli import setup_logging

logger = logging.getLogger("bench.load")

ROOT = Path(__file__).resolve().parents[1]
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


@dataclass
class LoadArguments:
    """Which demo to load, with how many clients and requests."""

    url: str | None = field(default=None, metadata={"help": "A running demo, e.g. http://127.0.0.1:7860/."})
    model: str | None = field(
        default=None, metadata={"help": "Or a run folder (or Hub id): demo/app.py is started on it for the run."}
    )
    image: str | None = field(default=None, metadata={"help": "The photo to send (default: a generated JPEG)."})
    clients: int = field(default=10, metadata={"help": "Concurrent clients, one thread each."})
    requests: int = field(default=5, metadata={"help": "Requests per client, sent one after another."})
    timeout: float = field(default=120.0, metadata={"help": "Seconds a request may wait before it counts as lost."})

    def __post_init__(self) -> None:
        if (self.url is None) == (self.model is None):
            raise ValueError("give either --url of a running demo or --model to start one")
        if self.clients < 1 or self.requests < 1:
            raise ValueError("--clients and --requests must be at least 1")


@dataclass
class Outcome:
    """One request: ``answered`` (``detail`` is the top label), ``failed`` (the error) or ``lost``."""

    status: str
    latency_ms: float
    detail: str = ""


def sample_photo(path: Path, size: tuple[int, int] = (500, 375)) -> Path:
    """Write a Flowers-sized JPEG of smooth colours with some noise, the same every time."""
    rng = np.random.default_rng(0)
    width, height = size
    ramp = np.linspace(0, 255, width)[None, :, None] * np.array([1.0, 0.5, 0.2])
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def client_session(url: str, photo: Path, requests: int, start: threading.Barrier, timeout: float) -> list[Outcome]:
    """One person: connect, wait for the others, then send ``requests`` photos one after another."""
    try:
        client = Client(url, verbose=False)
    except Exception as error:
        client, reason = None, f"could not connect: {error}"
    start.wait()  # every client connects first, so that the requests overlap
    if client is None:
        return [Outcome("failed", 0.0, reason)] * requests
    outcomes = []
    for _ in range(requests):
        began = time.perf_counter()
        job = client.submit(handle_file(str(photo)), api_name="/predict")
        try:
            result = job.result(timeout=timeout)
            outcomes.append(Outcome("answered", _ms_since(began), result["label"]))
        except TimeoutError:
            job.cancel()
            outcomes.append(Outcome("lost", _ms_since(began), f"no answer in {timeout:g} s"))
        except Exception as error:
            outcomes.append(Outcome("failed", _ms_since(began), str(error)))
    return outcomes


def _ms_since(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def run_load(url: str, photo: Path, clients: int = 10, requests: int = 5, timeout: float = 120.0) -> dict[str, Any]:
    """``clients`` concurrent clients each sending ``requests`` photos to ``url``'s ``/predict``; the summary.

    Args:
        url: the demo's address.
        photo: the image every request uploads.
        clients: concurrent clients, each a thread with its own ``gradio_client.Client``.
        requests: requests per client.
        timeout: seconds after which a request without an answer counts as lost.
    """
    start = threading.Barrier(clients + 1)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        sessions = [pool.submit(client_session, url, photo, requests, start, timeout) for _ in range(clients)]
        start.wait()
        began = time.perf_counter()
        outcomes = [outcome for session in sessions for outcome in session.result()]
        wall_s = time.perf_counter() - began
    return summarize(outcomes, clients, requests, wall_s)


def summarize(outcomes: list[Outcome], clients: int, requests: int, wall_s: float) -> dict[str, Any]:
    """Counts, latency percentiles of the answered requests, throughput, and where and when it ran."""
    answered = [outcome for outcome in outcomes if outcome.status == "answered"]
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    latencies = np.array([outcome.latency_ms for outcome in answered])
    sent = clients * requests
    return {
        "clients": clients,
        "requests_per_client": requests,
        "sent": sent,
        "answered": len(answered),
        "failed": len(failed),
        "lost": sent - len(answered) - len(failed),
        **{
            f"latency_ms_{name}": round(float(np.percentile(latencies, q)), 1) if len(latencies) else None
            for name, q in (("p50", 50), ("p95", 95), ("max", 100))
        },
        "wall_s": round(wall_s, 2),
        "throughput_req_s": round(len(answered) / wall_s, 2) if wall_s > 0 else None,
        "top_labels": dict(Counter(outcome.detail for outcome in answered)),
        "errors": dict(Counter(outcome.detail for outcome in outcomes if outcome.status != "answered")),
        "machine": machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def all_answered(summary: dict[str, Any]) -> bool:
    """No request failed or was lost."""
    return summary["answered"] == summary["sent"]


def machine() -> dict[str, Any]:
    """The CPU the demo and the clients share (with ``--model``) and the load on it when the run ended."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    name = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )
    return {"cpu": name, "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_demo(model: str, startup_timeout: float = 300.0) -> Iterator[str]:
    """``python demo/app.py --model MODEL`` on a free port until the block ends; yields its URL."""
    port = free_port()
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--model", model, "--port", str(port)]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_up(url, server, startup_timeout, log)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_up(url: str, server: subprocess.Popen, timeout: float, log: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    log.seek(0)
    raise RuntimeError(f"the demo did not start in {timeout:g} s:\n{log.read()[-4000:]}")


def format_summary(summary: dict[str, Any], url: str) -> str:
    info = summary["machine"]
    return "\n".join(
        [
            f"Demo under load, {summary['date']}: {url} ({info['cpu_count']} cores, {info['cpu']})",
            f"{summary['clients']} clients x {summary['requests_per_client']} requests: sent {summary['sent']}, "
            f"answered {summary['answered']}, failed {summary['failed']}, lost {summary['lost']}",
            f"latency ms: p50 {summary['latency_ms_p50']}, p95 {summary['latency_ms_p95']}, "
            f"max {summary['latency_ms_max']}",
            f"wall {summary['wall_s']} s, {summary['throughput_req_s']} requests/s",
            f"top labels: {summary['top_labels']}" + (f"; errors: {summary['errors']}" if summary["errors"] else ""),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(LoadArguments).parse_args_into_dataclasses(args=argv)
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise

    with tempfile.TemporaryDirectory(prefix="flowers_load_") as tmp:
        photo = Path(args.image) if args.image else sample_photo(Path(tmp) / "photo.jpg")
        with serve_demo(args.model) if args.model else nullcontext(args.url) as url:
            logger.info("%d clients x %d requests to %s", args.clients, args.requests, url)
            summary = run_load(url, photo, args.clients, args.requests, args.timeout)
    summary["url"] = url
    summary["image"] = args.image or "generated 500x375 JPEG"
    print(format_summary(summary, url))
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    sys.exit(0 if all_answered(main()) else 1)
