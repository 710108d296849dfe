"""The batching comparison of ``bench/load.py --compare_batching``: the demo served twice on the same model, one
photo per forward pass (``--max_batch_size 1``) and batched (its default), both up at once and loaded in turn."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.arguments import LoadArguments
from bench.clients import Outcome, run_clients, summarize
from bench.serve import Demo, serve_demo

logger = logging.getLogger("bench.load")

BATCHING_MODES = {"unbatched": ("--max_batch_size", "1"), "batched": ()}  # the demo's flags in each


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
