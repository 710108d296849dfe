"""The load generator of ``bench/load.py``: concurrent ``gradio_client`` clients calling the demo's ``/predict``,
each request's outcome (answered, failed or lost), and their summary (counts, latency percentiles, throughput)."""

from __future__ import annotations

import datetime
import os
import platform
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image


@dataclass
class Outcome:
    """One request: ``answered`` (``detail`` is the top label), ``failed`` (the error) or ``lost``, and when it
    ended (``time.perf_counter``)."""

    status: str
    latency_ms: float
    detail: str = ""
    ended: float = field(default_factory=time.perf_counter)


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


def machine() -> dict[str, Any]:
    """The CPU the demo and the clients share (with ``--model``) and the load on it when the run ended."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    name = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )
    return {"cpu": name, "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}
