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
"""

from __future__ import annotations

import datetime
import itertools
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
from urllib.parse import urlparse

import numpy as np
import psutil
import torch
from gradio_client import Client, handle_file
from PIL import Image
from transformers import HfArgumentParser

from flowers_hf.core.cli import setup_logging
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model

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
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SOAK_CLIENTS, SOAK_TOTAL = 20, 1000
COMPARE_CLIENTS, COMPARE_REQUESTS = 20, 10
SAMPLE_EVERY_S = 0.2
BATCHING_MODES = {"unbatched": ("--max_batch_size", "1"), "batched": ()}  # the demo's flags in each


@dataclass
class LoadArguments:
    """Which demo to load, with how many clients and requests."""

    url: str | None = field(default=None, metadata={"help": "A running demo, e.g. http://127.0.0.1:7860/."})
    model: str | None = field(
        default=None, metadata={"help": "Or a run folder (or Hub id): demo/app.py is started on it for the run."}
    )
    make_model: str | None = field(
        default=None,
        metadata={"help": "Or a timm architecture (resnet18): an untrained model of it at --image_size is served."},
    )
    image_size: int = field(default=224, metadata={"help": "The input size of the --make_model model."})
    image: str | None = field(default=None, metadata={"help": "The photo to send (default: a generated JPEG)."})
    clients: int | None = field(
        default=None, metadata={"help": "Concurrent clients, one thread each (default 10; 20 with --soak or "
                                "--compare_batching)."}
    )  # fmt: skip
    requests: int | None = field(
        default=None, metadata={"help": "Requests per client, sent one after another (default 5; with --soak 1,000 "
                                "in all; with --compare_batching 10)."}
    )  # fmt: skip
    timeout: float = field(default=120.0, metadata={"help": "Seconds a request may wait before it counts as lost."})
    soak: bool = field(
        default=False, metadata={"help": "Latency per quarter of the requests and the demo's memory (loopback only)."}
    )
    max_s: float = field(default=900.0, metadata={"help": "With --soak: no request is sent after this many seconds."})
    pid: int | None = field(default=None, metadata={"help": "With --url: the demo's process id, for its memory."})
    compare_batching: bool = field(
        default=False, metadata={"help": "Serve --model twice, --max_batch_size 1 and the default; compare them."}
    )
    rounds: int = field(default=2, metadata={"help": "With --compare_batching: loaded runs of each, in turn."})
    alone_requests: int = field(
        default=20, metadata={"help": "With --compare_batching: requests of one client alone, in each mode."}
    )

    def __post_init__(self) -> None:
        if sum(option is not None for option in (self.url, self.model, self.make_model)) != 1:
            raise ValueError("give one of --url of a running demo, --model or --make_model to start one")
        if self.compare_batching and self.url is not None:
            raise ValueError("--compare_batching starts the demo itself: give --model or --make_model")
        if self.soak and self.url is not None and urlparse(self.url).hostname not in LOOPBACK:
            raise ValueError(f"--soak loads a demo on this machine only (127.0.0.1), not {self.url}")
        if self.clients is None:
            self.clients = SOAK_CLIENTS if self.soak else COMPARE_CLIENTS if self.compare_batching else 10
        if self.requests is None:
            self.requests = -(-SOAK_TOTAL // self.clients) if self.soak else 10 if self.compare_batching else 5
        if min(self.clients, self.requests, self.rounds, self.alone_requests) < 1 or self.max_s <= 0:
            raise ValueError("--clients, --requests, --rounds and --alone_requests must be at least 1, --max_s above 0")


@dataclass
class Outcome:
    """One request: ``answered`` (``detail`` is the top label), ``failed`` (the error) or ``lost``, and when it
    ended (``time.perf_counter``)."""

    status: str
    latency_ms: float
    detail: str = ""
    ended: float = field(default_factory=time.perf_counter)


@dataclass
class Demo:
    """A demo to load: its address, and its process where it runs here (for its memory)."""

    url: str
    pid: int | None = None


def sample_photo(path: Path, size: tuple[int, int] = (500, 375)) -> Path:
    """Write a Flowers-sized JPEG of smooth colours with some noise, the same every time."""
    rng = np.random.default_rng(0)
    width, height = size
    ramp = np.linspace(0, 255, width)[None, :, None] * np.array([1.0, 0.5, 0.2])
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def client_session(
    url: str, photo: Path, requests: int, start: threading.Barrier, timeout: float, max_s: float | None = None
) -> list[Outcome]:
    """One person: connect, wait for the others, then send ``requests`` photos one after another, none once
    ``max_s`` seconds have passed since all started."""
    try:
        client = Client(url, verbose=False)
    except Exception as error:
        client, reason = None, f"could not connect: {error}"
    start.wait()  # every client connects first, so that the requests overlap
    stop_at = time.perf_counter() + (float("inf") if max_s is None else max_s)
    if client is None:
        return [Outcome("failed", 0.0, reason)] * requests
    outcomes = []
    for _ in range(requests):
        if time.perf_counter() >= stop_at:
            break
        began = time.perf_counter()
        job = client.submit(handle_file(str(photo)), api_name="/predict")
        try:
            result = job.result(timeout=timeout)
            # A label without confidences is the message of a photo the demo could not classify.
            status = "answered" if result.get("confidences") is not None else "failed"
            outcomes.append(Outcome(status, _ms_since(began), result["label"]))
        except TimeoutError:
            job.cancel()
            outcomes.append(Outcome("lost", _ms_since(began), f"no answer in {timeout:g} s"))
        except Exception as error:
            outcomes.append(Outcome("failed", _ms_since(began), str(error)))
    return outcomes


def _ms_since(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def run_clients(
    url: str, photo: Path, clients: int, requests: int, timeout: float = 120.0, max_s: float | None = None
) -> tuple[list[Outcome], float, float]:
    """``clients`` concurrent clients each sending up to ``requests`` photos to ``url``'s ``/predict``, none after
    ``max_s`` seconds; every request's outcome, when they started (``time.perf_counter``) and the seconds it took.

    Args:
        url: the demo's address.
        photo: the image every request uploads.
        clients: concurrent clients, each a thread with its own ``gradio_client.Client``.
        requests: requests per client.
        timeout: seconds after which a request without an answer counts as lost.
        max_s: seconds after which no client sends another request; ``None``: no limit.
    """
    start = threading.Barrier(clients + 1)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        sessions = [pool.submit(client_session, url, photo, requests, start, timeout, max_s) for _ in range(clients)]
        start.wait()
        began = time.perf_counter()
        outcomes = [outcome for session in sessions for outcome in session.result()]
        wall_s = time.perf_counter() - began
    return outcomes, began, wall_s


def run_load(url: str, photo: Path, clients: int = 10, requests: int = 5, timeout: float = 120.0) -> dict[str, Any]:
    """``clients`` concurrent clients each sending ``requests`` photos to ``url``'s ``/predict``; the summary.

    Args:
        url: the demo's address.
        photo: the image every request uploads.
        clients: concurrent clients, each a thread with its own ``gradio_client.Client``.
        requests: requests per client.
        timeout: seconds after which a request without an answer counts as lost.
    """
    outcomes, _, wall_s = run_clients(url, photo, clients, requests, timeout)
    return summarize(outcomes, clients, requests, wall_s)


def summarize(outcomes: list[Outcome], clients: int, requests: int, wall_s: float) -> dict[str, Any]:
    """Counts, latency percentiles of the answered requests, throughput, and where and when it ran."""
    answered = [outcome for outcome in outcomes if outcome.status == "answered"]
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    sent = len(outcomes)
    return {
        "clients": clients,
        "requests_per_client": requests,
        "planned": clients * requests,
        "sent": sent,
        "answered": len(answered),
        "failed": len(failed),
        "lost": sent - len(answered) - len(failed),
        **latency_percentiles(answered, ("p50", "p95", "max")),
        "wall_s": round(wall_s, 2),
        "throughput_req_s": round(len(answered) / wall_s, 2) if wall_s > 0 else None,
        "top_labels": dict(Counter(outcome.detail for outcome in answered)),
        "errors": dict(Counter(outcome.detail for outcome in outcomes if outcome.status != "answered")),
        "machine": machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def latency_percentiles(answered: list[Outcome], names: tuple[str, ...] = ("p50", "p95")) -> dict[str, float | None]:
    """``latency_ms_p50`` … of the answered requests (``max``: the 100th percentile); ``None`` without any."""
    latencies = np.array([outcome.latency_ms for outcome in answered])
    return {
        f"latency_ms_{name}": round(float(np.percentile(latencies, 100 if name == "max" else int(name[1:]))), 1)
        if len(latencies)
        else None
        for name in names
    }


def all_answered(summary: dict[str, Any]) -> bool:
    """No request failed or was lost (with ``batching``, in either mode, loaded or alone)."""
    modes = [summary["batching"][mode] for mode in BATCHING_MODES] if "batching" in summary else []
    return all(run["answered"] == run["sent"] for run in [summary, *modes, *(mode["alone"] for mode in modes)])


class MemorySampler:
    """The resident memory of a process, every ``every`` seconds in a thread while the block runs: ``samples`` holds
    ``(time.perf_counter(), MB)`` pairs, the first taken on entering, the last on leaving.

    Args:
        pid: the process.
        every: seconds between samples.
    """

    def __init__(self, pid: int, every: float = SAMPLE_EVERY_S) -> None:
        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        self.samples.append((time.perf_counter(), self.process.memory_info().rss / 2**20))


def quarters(outcomes: list[Outcome], began: float, samples: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """The requests in four quarters by when they ended: counts, latency and the demo's memory in each.

    Args:
        outcomes: every request of the run.
        began: when the run started (``time.perf_counter``).
        samples: the demo's ``(time, MB)`` memory samples (``MemorySampler``); none: no memory figures.
    """
    ended = sorted(outcomes, key=lambda outcome: outcome.ended)
    bounds = [len(ended) * q // 4 for q in range(5)]
    report, start = [], began
    for q in range(4):
        part = ended[bounds[q] : bounds[q + 1]]
        end = part[-1].ended if part else start
        within = [mb for t, mb in samples if start < t <= end] or [mb for t, mb in samples if t <= end][-1:]
        report.append(
            {
                "quarter": q + 1,
                "requests": len(part),
                "answered": sum(outcome.status == "answered" for outcome in part),
                "failed": sum(outcome.status == "failed" for outcome in part),
                "lost": sum(outcome.status == "lost" for outcome in part),
                **latency_percentiles([outcome for outcome in part if outcome.status == "answered"]),
                "ended_s": round(end - began, 1),
                "rss_mb": round(within[-1], 1) if within else None,  # at the quarter's end
                "rss_mb_max": round(max(within), 1) if within else None,
            }
        )
        start = end
    return report


def run_soak(
    demo: Demo, photo: Path, clients: int, requests: int, timeout: float = 120.0, max_s: float | None = None
) -> dict[str, Any]:
    """:func:`run_load`, with ``soak``: the four quarters (:func:`quarters`) and the demo's memory from the first
    request to the last (none without ``demo.pid``).

    Args:
        demo: the demo, on this machine.
        photo: the image every request uploads.
        clients: concurrent clients.
        requests: requests per client.
        timeout: seconds after which a request without an answer counts as lost.
        max_s: seconds after which no more requests are sent.
    """
    memory = MemorySampler(demo.pid) if demo.pid is not None else nullcontext()
    with memory:
        outcomes, began, wall_s = run_clients(demo.url, photo, clients, requests, timeout, max_s)
    samples = memory.samples if demo.pid is not None else []
    summary = summarize(outcomes, clients, requests, wall_s)
    parts = quarters(outcomes, began, samples)
    first, last = parts[0]["rss_mb"], parts[-1]["rss_mb"]
    summary["soak"] = {
        "max_s": max_s,
        "stopped_early": summary["sent"] < summary["planned"],
        "quarters": parts,
        "rss_mb_start": round(samples[0][1], 1) if samples else None,
        "rss_mb_peak": round(max(mb for _, mb in samples), 1) if samples else None,
        "rss_mb_growth": round(last - first, 1) if samples else None,  # from the first quarter's end to the last's
        "memory_samples": len(samples),
    }
    return summary


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
def serve_demo(model: str, flags: tuple[str, ...] = (), startup_timeout: float = 300.0) -> Iterator[Demo]:
    """``python demo/app.py --model MODEL [FLAGS]`` on a free port until the block ends; yields its URL and process.

    Args:
        model: a run folder or Hub id.
        flags: more of the demo's flags, e.g. ``("--max_batch_size", "1")``.
        startup_timeout: seconds it may take to answer.
    """
    port = free_port()
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--model", model, "--port", str(port), *flags]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_up(url, server, startup_timeout, log)
            yield Demo(url, server.pid)
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


def make_model(architecture: str, image_size: int, folder: Path) -> Path:
    """An untrained ``architecture`` for the 102 flowers at ``image_size`` px, saved as train.py saves a model: it
    costs what a trained one does.

    Args:
        architecture: a timm model name (``resnet18``).
        image_size: its input size.
        folder: where to write it.
    """
    torch.manual_seed(0)
    model = build_model(ModelArguments(model=architecture, pretrained=False), list(FLOWER_NAMES))
    save_model(model, folder, resolve_preprocessing(model.timm_model, TransformArguments(image_size=image_size)))
    return folder


def compare_batching(model: str, photo: Path, args: LoadArguments) -> dict[str, Any]:
    """The demo on ``model`` twice, one photo per forward pass (``--max_batch_size 1``) and batched (its default),
    both up at once: one client alone on each, then ``args.rounds`` loaded runs of each in turn, so that both see
    the same load on the machine. The summary of the batched runs, with ``batching``: both modes and their ratio.

    Args:
        model: the run folder to serve.
        photo: the image every request uploads.
        args: the clients, requests, rounds and requests alone.
    """
    with serve_demo(model, BATCHING_MODES["unbatched"]) as unbatched, serve_demo(model) as batched:
        demos = {"unbatched": unbatched, "batched": batched}
        alone = {}
        for mode, demo in demos.items():
            run_clients(demo.url, photo, 2, 3, args.timeout)  # warm-up, not counted
            outcomes, _, wall_s = run_clients(demo.url, photo, 1, args.alone_requests, args.timeout)
            alone[mode] = summarize(outcomes, 1, args.alone_requests, wall_s)
        runs = loaded_runs(demos, photo, args)
    return runs["batched"] | {"batching": batching_report(runs, alone)}


def loaded_runs(demos: dict[str, Demo], photo: Path, args: LoadArguments) -> dict[str, dict[str, Any]]:
    """``args.rounds`` runs of ``args.clients`` clients on each demo in turn; each demo's summary of all its runs,
    with the CPU time per request of the demo's process and of the clients (this process), which share the CPUs.

    Args:
        demos: the demos, by mode.
        photo: the image every request uploads.
        args: the clients, requests per client and rounds.
    """
    outcomes: dict[str, list[Outcome]] = {mode: [] for mode in demos}
    totals = {mode: np.zeros(3) for mode in demos}  # wall, the demo's CPU, the clients' CPU (s)
    for _, (mode, demo) in itertools.product(range(args.rounds), demos.items()):
        logger.info("%s: %d clients x %d requests", mode, args.clients, args.requests)
        before = np.array([0.0, cpu_seconds(demo.pid), cpu_seconds()])
        run, _, wall_s = run_clients(demo.url, photo, args.clients, args.requests, args.timeout)
        totals[mode] += np.array([wall_s, cpu_seconds(demo.pid), cpu_seconds()]) - before
        outcomes[mode] += run
    summaries = {}
    for mode, (wall_s, demo_cpu, clients_cpu) in totals.items():
        summary = summarize(outcomes[mode], args.clients, args.requests * args.rounds, wall_s)
        summary["demo_cpu_ms_per_request"] = round(1000 * demo_cpu / max(1, summary["sent"]), 1)
        summary["clients_cpu_ms_per_request"] = round(1000 * clients_cpu / max(1, summary["sent"]), 1)
        summaries[mode] = summary
    return summaries


def cpu_seconds(pid: int | None = None) -> float:
    """The user and system CPU time a process (this one without ``pid``) has used so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def batching_report(loaded: dict[str, dict[str, Any]], alone: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each mode's loaded and lone figures (summaries of :func:`summarize`), and the ratios of their throughputs and
    of the demo's CPU time per request."""
    keys = ("sent", "answered", "failed", "lost", "throughput_req_s", "latency_ms_p50", "latency_ms_p95")
    cpu = ("demo_cpu_ms_per_request", "clients_cpu_ms_per_request")
    report: dict[str, Any] = {
        mode: {
            "flags": list(BATCHING_MODES[mode]),
            **{key: loaded[mode].get(key) for key in (*keys, *cpu)},
            "alone": {key: alone[mode][key] for key in keys},
        }
        for mode in BATCHING_MODES
    }
    report["throughput_ratio"] = _ratio(loaded["batched"]["throughput_req_s"], loaded["unbatched"]["throughput_req_s"])
    report["demo_cpu_ratio"] = _ratio(loaded["unbatched"].get(cpu[0]), loaded["batched"].get(cpu[0]))
    return report


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


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
            *_soak_lines(summary.get("soak")),
            *_batching_lines(summary.get("batching")),
        ]
    )


def _soak_lines(soak: dict[str, Any] | None) -> list[str]:
    if soak is None:
        return []
    lines = [
        f"quarter {q['quarter']} (to {q['ended_s']} s): {q['answered']}/{q['requests']} answered, p50 "
        f"{q['latency_ms_p50']} ms, p95 {q['latency_ms_p95']} ms, demo RSS {q['rss_mb']} MB (max {q['rss_mb_max']})"
        for q in soak["quarters"]
    ]
    return [
        *lines,
        f"demo RSS: {soak['rss_mb_start']} MB at the start, peak {soak['rss_mb_peak']} MB, "
        f"{soak['rss_mb_growth']} MB from the first quarter's end to the last's"
        + (" (stopped early: --max_s)" if soak["stopped_early"] else ""),
    ]


def _batching_lines(batching: dict[str, Any] | None) -> list[str]:
    if batching is None:
        return []
    lines = []
    for mode in ("unbatched", "batched"):
        run, alone = batching[mode], batching[mode]["alone"]
        lines.append(
            f"{mode} ({' '.join(run['flags']) or 'default flags'}): {run['answered']}/{run['sent']} answered, "
            f"{run['throughput_req_s']} requests/s, p50 {run['latency_ms_p50']} ms, p95 {run['latency_ms_p95']} ms; "
            f"one client alone: p50 {alone['latency_ms_p50']} ms, p95 {alone['latency_ms_p95']} ms; CPU per request: "
            f"demo {run['demo_cpu_ms_per_request']} ms, clients {run['clients_cpu_ms_per_request']} ms"
        )
    return [
        *lines,
        f"batched / unbatched throughput: {batching['throughput_ratio']}x; unbatched / batched demo CPU per "
        f"request: {batching['demo_cpu_ratio']}x",
    ]


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
