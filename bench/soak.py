"""The soak of ``bench/load.py --soak``: a demo on this machine kept busy, the latency of each quarter of the
requests and the demo process's memory, sampled every ``SAMPLE_EVERY_S`` seconds."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import psutil

from bench.clients import Outcome, latency_percentiles, run_clients, summarize
from bench.serve import Demo

SAMPLE_EVERY_S = 0.2


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
