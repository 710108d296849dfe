"""The report of ``bench/run.py``: each ratio of the issue checked against its target, and the tables printed
before the JSON line (the figures per model, the ratios and their verdicts, the CPU cost per image, the recipes).
"""

from __future__ import annotations

from typing import Any

from bench.data_costs import VARIANTS

# (name, numerator, denominator, ">=" or "<=", target on a CPU, target on a GPU), from the issue; "cached" is our
# path with the training images decoded and shrunk once (flowers_hf.data.cache), which train.py does not do yet.
TARGETS = (
    ("pipeline / ceiling", "train_pipeline_img_s", "train_ceiling_img_s", ">=", 0.95, 0.90),
    ("cached / ceiling", "train_pipeline_cached_img_s", "train_ceiling_img_s", ">=", 0.95, 0.90),
    ("ours / peer", "train_pipeline_img_s", "peer_img_s", ">=", 1.0, 1.3),
    ("cached / peer", "train_pipeline_cached_img_s", "peer_img_s", ">=", 1.0, 1.3),
    ("demo / bare forward", "infer_ms_p50", "infer_ceiling_ms_p50", "<=", 1.2, 1.2),
    # The demo on the int8 export, end to end, against PyTorch eager's bare forward (issue "export", part 1).
    ("int8 demo / eager bare", "onnx_int8_infer_ms_p50", "infer_ceiling_ms_p50", "<=", 0.5, 0.5),
    # Our default data path's CPU per image against the peer's, one thread, same run (issue "small and fast", 2).
    ("data CPU ours / peer", "data_ours_cpu_ms", "data_peer_cpu_ms", "<=", 0.33, 0.33),
    # The same on a phone's 12-MP JPEG (issue 25, part 3), where decoding alone outlasts the forward pass.
    ("int8 12MP / eager bare", "onnx_int8_phone_infer_ms_p50", "infer_ceiling_ms_p50", "<=", 0.5, 0.5),
)
# The demo's backends as bench/run.py times them: (label, prefix of their latency keys).
BACKEND_ROWS = (("pytorch eager", ""), ("onnx fp32", "onnx_"), ("onnx int8", "onnx_int8_"))
# The training paths and their labels, in the order bench/run.py measures them each round and the CPU table shows them.
PATHS = {
    "train_ceiling_img_s": "ceiling (plain loop, batches in memory)",
    "train_pipeline_img_s": "our pipeline (train.py's path: decoded once, uint8 batches normalised on the device)",
    "train_pipeline_cached_img_s": "our pipeline, decoded once, normalised in the workers",
    "peer_img_s": "peer recipe (run_image_classification.py)",
}
# The data paths bench/run.py times alone (data_cpu_ms_per_image), as the data table names them.
DATA_PATHS = {
    "ours": "ours: train.py's default (decoded once, read as arrays, uint8 out)",
    "cached": "decoded once, normalised in the worker",
    "before": "the originals decoded every epoch (until 2026-12-01)",
    "peer": "peer recipe (run_image_classification.py)",
    "pil_read": "ours, the copy decoded by PIL per image (until 2026-12-05)",
    **{name: description for name, (description, _) in VARIANTS.items()},
}


def cpu_key(path: str) -> str:
    """The JSON key of a training path's CPU ms per image: ``train_pipeline_img_s`` -> ``train_pipeline_cpu_ms``."""
    return path.replace("_img_s", "_cpu_ms")


def target_checks(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each ratio of the issue with its target on this device, and whether (or by how much) it is missed. Training
    ratios also get ``cpu_time_ratio``, the same comparison made from CPU ms per image (see ``format_table``)."""
    checks = {}
    for name, numerator, denominator, op, cpu_target, gpu_target in TARGETS:
        if numerator not in run:  # a path not measured in this run (the ONNX exports without --onnx)
            continue
        target = gpu_target if run["device"] == "cuda" else cpu_target
        value = run[numerator] / run[denominator]
        checks[name] = {"value": round(value, 3), "target": f"{op} {target}", "result": verdict(value, op, target)}
        if numerator.endswith("_img_s"):
            checks[name]["cpu_time_ratio"] = round(run[cpu_key(denominator)] / run[cpu_key(numerator)], 3)
    return checks


def verdict(value: float, op: str, target: float) -> str:
    """``met``, or ``missed by`` the gap in the ratio and as a share of the target."""
    gap = target - value if op == ">=" else value - target
    if gap <= 0:
        return "met"
    return f"missed by {gap:.2f} ({gap / target:.0%})"


def format_table(summary: dict[str, Any]) -> str:
    """The figures per model, each ratio against its target, the CPU cost per image, the recipes' wall times."""
    info = summary["machine"]
    heading = (
        f"flowers_hf benchmark, {summary['date']}: {summary['device']} ({info['name']}, {info['cpu_count']} cores), "
        f"torch {info['torch']}; load average {summary['load_average'][0]:.1f} at the start, "
        f"{summary['load_average'][1]:.1f} at the end"
    )
    sections = [[heading]]
    if summary["runs"]:
        runs = summary["runs"]
        sections += [figures_table(runs), targets_table(runs), cpu_table(runs), *map(data_table, runs)]
    if any("onnx_infer_ms_p50" in run for run in summary["runs"]):
        sections.insert(2, backends_table(summary["runs"]))
    if "probe_wall_s" in summary:
        sections.append(probe_table(summary))
    if summary.get("recipes"):
        sections.append(
            [f"{'recipe (train.py, 1,020 images at 500 px)':<46}wall s"]
            + [f"{name:<46}{seconds:.0f}" for name, seconds in summary["recipes"].items()]
        )
    return "\n\n".join("\n".join(lines) for lines in sections)


def figures_table(runs: list[dict[str, Any]]) -> list[str]:
    """The figures per model: throughput of every training path, inference latency, memory peaks."""
    lines = [
        f"{'model':<16}{'px':>5}{'batch':>6}{'workers':>8}{'ceiling img/s':>15}{'ours img/s':>12}{'cached img/s':>14}"
        f"{'peer img/s':>12}{'demo ms p50/p95':>18}{'bare ms p50/p95':>18}{'RSS MB main/worker':>21}"
    ]
    for run in runs:
        lines.append(
            f"{run['model']:<16}{run['image_size']:>5}{run['batch_size']:>6}{run['workers']:>8}"
            f"{run['train_ceiling_img_s']:>15.2f}{run['train_pipeline_img_s']:>12.2f}"
            f"{run['train_pipeline_cached_img_s']:>14.2f}{run['peer_img_s']:>12.2f}"
            f"{run['infer_ms_p50']:>10.1f} / {run['infer_ms_p95']:<5.1f}"
            f"{run['infer_ceiling_ms_p50']:>10.1f} / {run['infer_ceiling_ms_p95']:<5.1f}"
            f"{run['peak_rss_mb']:>13.0f} / {run['peak_rss_worker_mb']:<5.0f}"
        )
    return lines


def backends_table(runs: list[dict[str, Any]]) -> list[str]:
    """The demo's latency per backend (PyTorch eager, ONNX fp32 and int8), against PyTorch eager's bare forward."""
    lines = [
        f"{'model':<16}{'backend':<15}{'demo ms p50/p95':>18}{'bare ms p50/p95':>18}   demo / eager bare"
        f"{'12-MP demo ms p50':>20}"
    ]
    for run in runs:
        for label, prefix in BACKEND_ROWS:
            if f"{prefix}infer_ms_p50" not in run:
                continue
            phone = run.get(f"{prefix}phone_infer_ms_p50")
            lines.append(
                f"{run['model']:<16}{label:<15}"
                f"{run[f'{prefix}infer_ms_p50']:>10.1f} / {run[f'{prefix}infer_ms_p95']:<5.1f}"
                f"{run[f'{prefix}infer_ceiling_ms_p50']:>10.1f} / {run[f'{prefix}infer_ceiling_ms_p95']:<5.1f}"
                f"   {run[f'{prefix}infer_ms_p50'] / run['infer_ceiling_ms_p50']:<17.2f}"
                + (f"{phone:>20.1f}" if phone is not None else "")
            )
    return lines


def targets_table(runs: list[dict[str, Any]]) -> list[str]:
    """Each ratio per model with its value, its target, the verdict and the ratio from CPU time."""
    lines = [f"{'model':<16}{'ratio':<22}{'value':>7}  {'target':<9}{'result':<24}from CPU time"]
    for run in runs:
        for name, check in run["targets"].items():
            from_cpu = f"{check['cpu_time_ratio']:.2f}" if "cpu_time_ratio" in check else ""
            lines.append(
                f"{run['model']:<16}{name:<22}{check['value']:>7.2f}  {check['target']:<9}{check['result']:<24}"
                f"{from_cpu}"
            )
    return lines


def cpu_table(runs: list[dict[str, Any]]) -> list[str]:
    """CPU ms per image of every training path per model."""
    lines = [
        "CPU ms per image (this process and its workers, every thread): a shared machine's load changes wall time",
        "more than CPU time; with every core busy, throughput ratios approach the inverse CPU-time ratios.",
        f"{'model':<16}{'ceiling':>9}{'ours':>9}{'cached':>9}{'peer':>9}",
    ]
    for run in runs:
        lines.append(f"{run['model']:<16}" + "".join(f"{run[cpu_key(path)]:>9.1f}" for path in PATHS))
    return lines


def data_table(run: dict[str, Any]) -> list[str]:
    """Each data path alone for one model: CPU ms per image on one thread and its ratio to the peer's, then the
    device's batch jitter (``--color_jitter_on_device``)."""
    costs = run["data_cpu_ms_per_image"]
    lines = [
        f"{run['model']}: the data path alone, CPU ms per image, one thread (median of the passes)",
        f"{'path':<68}{'ms':>8}{'/ peer':>9}",
    ]
    for path, ms in costs.items():
        lines.append(f"{DATA_PATHS.get(path, path):<68}{ms:>8.3f}{ms / costs['peer']:>9.2f}")
    where = "wall ms on the GPU" if run["device"] == "cuda" else "CPU ms, one thread"
    jitter = run["device_jitter_ms_per_image"]
    lines.append(f"--color_jitter_on_device's batch jitter, {where} per image: {jitter:.3f}")
    return lines


def probe_table(summary: dict[str, Any]) -> list[str]:
    """The linear probe's wall time and test accuracy on each path, and their ratio against its target."""
    ratio = summary["probe_wall_ratio"]
    return [
        f"{'ResNet18 linear probe (train.py, 20 epochs)':<52}{'wall s':>8}{'test accuracy':>15}",
        f"{'features once (--probe_views of the preset)':<52}{summary['probe_wall_s']:>8.0f}"
        f"{summary['probe_test_accuracy']:>15.4f}",
        f"{'whole model every time (--frozen_features false)':<52}{summary['probe_wall_s_before']:>8.0f}"
        f"{summary['probe_test_accuracy_before']:>15.4f}",
        f"wall-time ratio {ratio:.3f}, target <= 0.25: {verdict(ratio, '<=', 0.25)}",
    ]


# The photos of bench/inference.py: (label, infix of their latency keys, name of their step keys).
PHOTO_COLUMNS = (("500-px photo", "", "photo"), ("12-MP phone JPEG", "phone_", "phone"))
INT8_CLICK_STEPS = ("open", "prepare", "answer")


def serving_table(run: dict[str, Any]) -> list[str]:
    """``bench/inference.py``'s figures of one model: each backend's click on each photo next to its bare forward,
    the int8 click over PyTorch eager's bare forward against its target, and the int8 click step by step."""
    lines = [
        f"{run['model']} at {run['image_size']} px: the demo's click, from the file to the answer; ms p50 / p95",
        f"{'backend':<16}" + "".join(f"{label:>20}" for label, _, _ in PHOTO_COLUMNS) + f"{'bare forward':>16}",
    ]
    for label, prefix in BACKEND_ROWS:
        if f"{prefix}infer_ms_p50" in run:
            cells = [_p50_p95(run, f"{prefix}{infix}infer_ms") for _, infix, _ in PHOTO_COLUMNS]
            lines.append(
                f"{label:<16}"
                + "".join(f"{cell:>20}" for cell in cells)
                + f"{_p50_p95(run, f'{prefix}infer_ceiling_ms'):>16}"
            )
    for label, infix, _ in PHOTO_COLUMNS:
        if (ratio := run.get(f"int8_{infix}ratio")) is not None:
            target = next(t for name, key, _, _, t, _ in TARGETS if key == f"onnx_int8_{infix}infer_ms_p50")
            lines.append(
                f"int8 click / PyTorch bare forward, {label}: {ratio:.2f} (<= {target}: {verdict(ratio, '<=', target)})"
            )
    lines.append(
        f"{'int8 click, ms p50':<20}"
        + "".join(f"{step:>9}" for step in INT8_CLICK_STEPS)
        + f"{'(forward)':>11}{'click':>9}{'before':>9}"
    )
    for _, infix, name in PHOTO_COLUMNS:
        if f"{name}_open_ms_p50" in run:
            steps = "".join(f"{run[f'{name}_{step}_ms_p50']:>9.2f}" for step in INT8_CLICK_STEPS)
            lines.append(
                f"{name:<20}{steps}{run.get('onnx_int8_infer_ceiling_ms_p50', float('nan')):>11.2f}"
                f"{run.get(f'onnx_int8_{infix}infer_ms_p50', float('nan')):>9.2f}{run[f'{name}_before_ms_p50']:>9.2f}"
            )
    variants = [key[11:-7] for key in run if key.startswith("int8_click_") and key.endswith("_ms_p50")]
    if variants:
        timed = ", ".join(f"{name} {_p50_p95(run, f'int8_click_{name}_ms')}" for name in variants)
        lines.append(f"int8 click on the 500-px photo under ONNX Runtime settings, ms p50 / p95: {timed}")
    return lines


def _p50_p95(run: dict[str, Any], key: str) -> str:
    return f"{run[f'{key}_p50']:.1f} / {run[f'{key}_p95']:.1f}" if f"{key}_p50" in run else "-"
