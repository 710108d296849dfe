"""The report of ``bench/load.py``: the summary printed before the JSON line (counts, latency, throughput, and the
soak's quarters or the batching comparison), and whether every request was answered (the exit status)."""

from __future__ import annotations

from typing import Any

from bench.batching import BATCHING_MODES


def all_answered(summary: dict[str, Any]) -> bool:
    """No request failed or was lost (with ``batching``, in either mode, loaded or alone)."""
    modes = [summary["batching"][mode] for mode in BATCHING_MODES] if "batching" in summary else []
    return all(run["answered"] == run["sent"] for run in [summary, *modes, *(mode["alone"] for mode in modes)])


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
