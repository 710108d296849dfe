"""bench/run.py end to end on tiny settings (keys and consistency of its JSON, never timings), the pure helpers of
bench/tables.py and bench/timing.py, and the resized-image cache (flowers_hf.data.cache) it measures."""

import importlib.metadata
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from helpers import ROOT, dry_gpu_check
from PIL import Image

from bench import inference, tables, timing
from bench import run as bench
from bench.arguments import BenchArguments
from bench.data_costs import VARIANTS, data_costs, pil_read_split, variant_splits
from bench.recipes import RECIPES
from flowers_hf.data.cache import cache_resized, cached_side
from flowers_hf.data.pixels import rgb_array
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.synthetic import split_counts
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, with_transforms

# Every code path of a real run, at sizes that finish in seconds: test_resnet at 64 px on 96 px JPEGs.
TINY = [
    "--models", "test_resnet", "--image_size", "64", "--source_image_size", "96", "--num_classes", "4",
    "--batch_size", "8", "--warmup_steps", "1", "--steps", "2", "--infer_runs", "5", "--workers", "1",
    "--phone_side", "400",
]  # fmt: skip
FIGURES = [
    "train_pipeline_img_s",
    "train_pipeline_cached_img_s",
    "train_ceiling_img_s",
    "peer_img_s",
    "infer_ms_p50",
    "infer_ms_p95",
    "infer_ceiling_ms_p50",
    "infer_ceiling_ms_p95",
    "peak_rss_mb",
    "peak_rss_worker_mb",
]


@pytest.fixture(scope="module")
def output() -> tuple[list[str], dict]:
    done = subprocess.run(
        [sys.executable, "bench/run.py", *TINY], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


@pytest.mark.slow
def test_last_line_is_json_with_every_key_of_the_issue(output):
    _, result = output
    assert set(bench.REQUIRED_KEYS) <= set(result)
    assert result["runs"][0] == {key: result[key] for key in result["runs"][0]}  # the first model at the top level
    assert (result["model"], result["image_size"], result["batch_size"], result["workers"]) == ("test_resnet", 64, 8, 1)
    assert result["device"] == "cpu"
    assert result["command"].startswith("python bench/run.py --models test_resnet")


@pytest.mark.slow
def test_figures_are_positive_and_consistent(output):
    _, result = output
    assert all(result[key] > 0 for key in FIGURES)
    costs = result["data_cpu_ms_per_image"]
    assert set(costs) == {"ours", "cached", "before", "peer", "pil_read", *VARIANTS}
    assert all(ms > 0 for ms in costs.values()) and result["device_jitter_ms_per_image"] > 0
    data_ratio = result["targets"]["data CPU ours / peer"]
    assert data_ratio["value"] == pytest.approx(costs["ours"] / costs["peer"], abs=2e-3)
    assert result["infer_ms_p95"] >= result["infer_ms_p50"]
    assert result["infer_ceiling_ms_p95"] >= result["infer_ceiling_ms_p50"]
    # The demo's predict runs the bare forward too, plus decoding and preprocessing; the main process holds more.
    assert result["peak_rss_mb"] >= result["peak_rss_worker_mb"]
    checks = result["targets"]
    ratio = result["train_pipeline_img_s"] / result["train_ceiling_img_s"]
    assert checks["pipeline / ceiling"]["value"] == pytest.approx(ratio, abs=1e-3)
    assert checks["demo / bare forward"]["target"] == "<= 1.2"
    for check in checks.values():
        assert check["result"] == "met" or check["result"].startswith("missed by")


@pytest.mark.slow
def test_table_comes_first_and_names_every_target(output):
    lines, result = output
    table = "\n".join(lines[:-1])
    assert "ceiling img/s" in table
    for name, check in result["targets"].items():
        # The ratio's own row: model, name, value, target, then its verdict as the whole column ("met" alone, not
        # inside "metric"), then the ratio from CPU time where there is one, and nothing else.
        columns = [result["model"], name, f"{check['value']:.2f}", check["target"], check["result"]]
        columns += [f"{check['cpu_time_ratio']:.2f}"] if "cpu_time_ratio" in check else []
        row = "^" + " +".join(map(re.escape, columns)) + " *$"  # spaces only: within one line
        assert re.search(row, table, re.MULTILINE), (name, check)


@pytest.mark.slow
def test_the_demo_is_timed_on_the_onnx_exports_too(output):
    lines, result = output
    for prefix in ("onnx_", "onnx_int8_"):
        assert result[f"{prefix}infer_ms_p95"] >= result[f"{prefix}infer_ms_p50"] > 0
        assert result[f"{prefix}infer_ceiling_ms_p95"] >= result[f"{prefix}infer_ceiling_ms_p50"] > 0
    assert result["targets"]["int8 demo / eager bare"]["target"] == "<= 0.5"
    assert result["targets"]["int8 12MP / eager bare"]["target"] == "<= 0.5"
    table = "\n".join(lines[:-1])
    assert "pytorch eager" in table and "onnx int8" in table


@pytest.mark.slow
def test_the_click_is_timed_on_the_phone_photo_step_by_step_and_as_before(output):
    _, result = output
    for prefix in ("", "onnx_", "onnx_int8_"):
        assert result[f"{prefix}phone_infer_ms_p95"] >= result[f"{prefix}phone_infer_ms_p50"] > 0
    for photo in ("photo", "phone"):
        steps = [result[f"{photo}_{step}_ms_p50"] for step in ("open", "prepare", "answer")]
        assert all(ms > 0 for ms in steps) and result[f"{photo}_before_ms_p50"] > 0
        assert steps[2] >= result["onnx_int8_infer_ceiling_ms_p50"] * 0.5  # the answer runs the forward pass


@pytest.mark.slow
def test_the_serving_benchmark_runs_alone_and_prints_its_ratios(tmp_path):
    command = [sys.executable, "bench/inference.py", "--models", "test_resnet", "--image_size", "32",
               "--source_image_size", "48", "--phone_side", "400", "--infer_runs", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    (run,) = json.loads(lines[-1])["runs"]
    assert run["int8_ratio"] == pytest.approx(run["onnx_int8_infer_ms_p50"] / run["infer_ceiling_ms_p50"], abs=2e-3)
    assert run["int8_phone_ratio"] > 0 and set(inference.SESSION_VARIANTS) == {
        key[11:-7] for key in run if key.startswith("int8_click_") and key.endswith("_ms_p50")
    }
    assert lines[0].startswith("load average") and lines[2:-1] == tables.serving_table(run)


@pytest.mark.slow
def test_the_fidelity_benchmark_compares_both_decodings_with_the_full_one():
    command = [sys.executable, "bench/fidelity.py", "--architecture", "test_resnet", "--image_size", "32",
               "--photos", "1", "--side", "800", "--formats", "jpeg", "png"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(row["photo"], row["format"]) for row in result["photos"]] == [
        (name, fmt) for name in ("flower 0", "china.jpg", "flower.jpg") for fmt in ("jpeg", "png")
    ]
    assert set(result["by_format"]) == {"jpeg served", "jpeg before", "png served", "png before"}
    for row in result["by_format"].values():
        assert row["photos"] == 3 and 0 <= row["mean_levels"] <= row["max_levels"] and 0 <= row["top1_agreement"] <= 1


def test_the_serving_table_gives_each_ratio_against_its_target():
    run = {"model": "resnet18", "image_size": 224, "infer_ceiling_ms_p50": 15.0, "infer_ceiling_ms_p95": 16.0}
    for key, ms in (("onnx_int8_infer_ms", 7.2), ("onnx_int8_phone_infer_ms", 60.0), ("infer_ms", 19.0)):
        run |= {f"{key}_p50": ms, f"{key}_p95": ms + 1}
    run |= inference.int8_ratios(run)
    assert run["int8_ratio"] == 0.48 and run["int8_phone_ratio"] == 4.0
    table = "\n".join(tables.serving_table(run))
    assert "500-px photo: 0.48 (<= 0.5: met)" in table
    assert "12-MP phone JPEG: 4.00 (<= 0.5: missed by 3.50 (700%))" in table
    assert "pytorch eager" in table and "onnx fp32" not in table  # a backend not timed gets no row


@pytest.mark.slow
def test_the_probe_is_timed_on_both_paths_side_by_side(tmp_path):
    import timm
    from safetensors.torch import save_file

    backbone = tmp_path / "backbone.safetensors"  # random weights stand in for the quickstart's here
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), backbone)
    command = [sys.executable, "bench/run.py", "--models", "none", "--probe", "--probe_backbone", str(backbone),
               "--probe_images_per_class", "3", "--image_size", "32", "--source_image_size", "48",
               "--probe_flags", "--num_train_epochs 3"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["probe_wall_s"] > 0 and result["probe_wall_s_before"] > 0
    assert result["probe_wall_ratio"] == pytest.approx(result["probe_wall_s"] / result["probe_wall_s_before"], abs=1e-3)
    assert 0 <= result["probe_test_accuracy"] <= 1 and 0 <= result["probe_test_accuracy_before"] <= 1
    # An accuracy is a count of right answers over the test split: 102 classes x split_counts(3)["test"] images,
    # so k / that count for a whole k (to the JSON's 4 decimals), which a wrong split or a made-up figure rarely is.
    test_images = 102 * split_counts(3)["test"]
    for key in ("probe_test_accuracy", "probe_test_accuracy_before"):
        right = round(result[key] * test_images)
        assert result[key] == pytest.approx(right / test_images, abs=5e-5), (key, result[key], test_images)
    assert "--frozen_features false" in result["probe_commands"]["probe_before"]
    assert "--frozen_features" not in result["probe_commands"]["probe"]  # the preset as it ships
    assert result["runs"] == [] and "ResNet18 linear probe" in done.stdout


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_dry_on_a_cpu(tmp_path):
    summary = dry_gpu_check(tmp_path)
    check_dry_gpu_summary(summary, tmp_path)
    assert summary["versions"]["transformers"] == importlib.metadata.version("transformers")  # the pinned one


def check_dry_gpu_summary(summary: dict, out: Path) -> None:
    """Every step of the dry GPU check reported (test_oldest.py checks it on the oldest supported versions)."""
    assert summary["bench"]["precision"] == "bf16" and summary["bench"]["channels_last"] is True
    assert set(bench.REQUIRED_KEYS) <= set(summary["bench"])
    compiled = summary["compile"]
    assert compiled["compiled"]["step_ms"] > 0 and compiled["eager"]["step_ms"] > 0 and compiled["compile_s"] > 0
    # The same fresh model, batches and seed, compiled or not: bf16 rounding apart, the same mean loss.
    assert compiled["compiled"]["training_loss"] == pytest.approx(compiled["eager"]["training_loss"], rel=0.02)
    assert set(summary["recipes"]) == set(RECIPES) and all(s > 0 for s in summary["recipes"].values())
    assert all(summary[f"{step}_wall_s"] > 0 for step in ("bench", "compile", "recipes"))
    # The distillation preset ran from its teacher, trained first; the student's card names it.
    assert summary["distill"]["status"] == 0 and summary["distill_wall_s"] > 0
    assert "## Distillation" in (out / "distill" / "README.md").read_text()


def test_targets_leave_out_what_a_run_did_not_measure():
    run = {"device": "cpu", "infer_ms_p50": 30.0, "infer_ceiling_ms_p50": 25.0}
    assert set(tables.target_checks(run)) == {"demo / bare forward"}
    run["onnx_int8_infer_ms_p50"] = 10.0
    assert tables.target_checks(run)["int8 demo / eager bare"] == {"value": 0.4, "target": "<= 0.5", "result": "met"}


def test_the_data_table_sets_each_path_beside_the_peer():
    costs = {"ours": 1.2, "cached": 1.4, "before": 3.0, "peer": 2.4, "no_rotate": 0.9}
    run = {"model": "resnet18", "device": "cpu", "data_cpu_ms_per_image": costs, "device_jitter_ms_per_image": 0.25}
    lines = tables.data_table(run)
    assert re.search(r"^ours: train.py's default .* +1\.200 +0\.50$", "\n".join(lines), re.MULTILINE)
    assert re.search(r"^lighter: no rotation +0\.900 +0\.38$", "\n".join(lines), re.MULTILINE)
    assert lines[-1].endswith("CPU ms, one thread per image: 0.250")
    check = tables.target_checks({"device": "cpu", "data_ours_cpu_ms": 1.2, "data_peer_cpu_ms": 2.4})
    assert check["data CPU ours / peer"] == {"value": 0.5, "target": "<= 0.33", "result": "missed by 0.17 (52%)"}


def test_data_costs_time_every_variant_of_the_recipe_on_the_same_images():
    prep = resolve_preprocessing("test_resnet")
    split = cache_resized(_photos([(120, 80), (60, 90)]), shorter_side=cached_side(prep))
    variants = variant_splits(split, prep)
    assert set(variants) == set(VARIANTS)
    steps = {name: split.format["format_kwargs"]["transform"].transform.pipeline.transforms
             for name, split in variants.items()}  # fmt: skip
    assert [type(step).__name__ for step in steps["crop_flip"]] == ["RandomResizedCrop", "HorizontalFlip", "Rotate",
                                                                     "ToTensorV2"]  # fmt: skip
    assert steps["no_rotate"][2].p == 0 and steps["bilinear"][0].interpolation == 1  # cv2.INTER_LINEAR
    pil = pil_read_split(split, prep)
    assert isinstance(pil[:1]["pixel_values"], torch.Tensor) and pil.features["image"].decode
    costs = data_costs({**variants, "pil_read": pil}, images=2, repeats=2)
    assert set(costs) == {*VARIANTS, "pil_read"} and all(ms > 0 for ms in costs.values())


def test_verdict_says_by_how_much_a_target_is_missed():
    assert tables.verdict(1.02, ">=", 1.0) == "met"
    assert tables.verdict(0.93, ">=", 0.95) == "missed by 0.02 (2%)"
    assert tables.verdict(1.5, "<=", 1.2) == "missed by 0.30 (25%)"
    assert tables.verdict(1.2, "<=", 1.2) == "met"


def test_rates_count_the_steps_after_the_warmup():
    stamps = {3: (10.0, 100.0), 13: (15.0, 109.6)}  # 10 steps of 32 images in 5 s, with 9.6 CPU seconds
    images_per_second, cpu_ms = timing.rates(stamps, 3, 13, 32)
    assert images_per_second == pytest.approx(64.0)
    assert cpu_ms == pytest.approx(30.0)


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.5]
    for q in (0, 50, 95, 100):
        assert timing.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_quick_mode_fills_in_its_defaults_and_flags_win():
    quick = BenchArguments(quick=True, device="cpu")
    assert (quick.models, quick.image_size, quick.warmup_steps, quick.steps) == (["resnet18"], 128, 2, 10)
    full = BenchArguments(device="cpu", steps=None, image_size=None)
    assert full.models == ["resnet18", "efficientnet_b3"] and full.image_size is None
    assert full.steps_for("efficientnet_b3") < full.steps_for("resnet18")
    assert BenchArguments(quick=True, device="cpu", image_size=64).image_size == 64
    with pytest.raises(ValueError, match="fp16"):
        BenchArguments(device="cpu", precision="fp16")


# flowers_hf.data.cache


def _photos(sizes: list[tuple[int, int]]) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": images, "label": [0, 1, 1][: len(sizes)]}, features=features)


def test_cache_shrinks_to_the_shorter_side_and_never_enlarges():
    cached = cache_resized(_photos([(120, 80), (60, 90), (30, 20)]), shorter_side=40)
    assert [rgb_array(image).shape for image in cached["image"]] == [(40, 60, 3), (60, 40, 3), (20, 30, 3)]
    assert cached["label"] == [0, 1, 1]
    # Stored raw, handed over undecoded: read as arrays, no PIL image per sample.
    assert cached.features == datasets.Features({**_photos([(8, 8)]).features, "image": datasets.Image(decode=False)})
    assert all(image["bytes"].startswith(b"P6") for image in cached["image"])
    assert all(Image.open(io.BytesIO(image["bytes"])).format == "PPM" for image in cached["image"])


def test_cached_images_feed_the_training_transform():
    prep = resolve_preprocessing("test_resnet")
    split = cache_resized(_photos([(120, 80), (60, 90)]), shorter_side=cached_side(prep))
    example = with_transforms(
        datasets.DatasetDict({"train": split}), build_train_transform(prep, seed=0), build_eval_transform(prep)
    )["train"][0]
    assert example["pixel_values"].shape == (3, *prep.input_size)
    assert cached_side(prep) == int(np.ceil(max(prep.input_size) * 1.15))
