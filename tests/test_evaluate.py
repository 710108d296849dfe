"""python -m flowers_hf.evaluate end to end: training's test pass again, calibration, TTA and the corruption suite."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from flowers_hf.core.cli import run_cli
from flowers_hf.core.errors import ClassMismatchError
from flowers_hf.data.labels import FLOWER_NAMES, check_class_names
from flowers_hf.evaluate import main

FILES = [
    "test_results.json", "classification_report.json", "confusion_matrix.png", "reliability_diagram.png",
    "robustness.json", "robustness.png", "evaluate_config.yaml",
]  # fmt: skip


@pytest.mark.slow
def test_the_command_repeats_the_test_pass_and_measures_robustness_calibration_and_tta(tiny_run, tmp_path):
    output = tmp_path / "eval"
    # The run folder comes first; the data options come from its train_config.yaml.
    command = [
        sys.executable, "-m", "flowers_hf.evaluate", str(tiny_run), "--split", "test", "--corruptions",
        "--corruption_names", "brightness", "zoom", "--severities", "1", "5", "--tta", "--tta_views", "flip",
        "--output_dir", str(output), "--disable_tqdm", "true",
        "--update_card", "false",  # the session's shared run folder stays as the other tests expect it
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [name for name in FILES if not (output / name).is_file()] == []

    # The same scores as training's own test pass, calibration included.
    results = json.loads((output / "test_results.json").read_text())
    training = json.loads((tiny_run / "test_results.json").read_text())
    assert results["test_accuracy"] == training["test_accuracy"]
    # One scoring function: the keys differ only by what each pass adds (the Trainer's loss and runtime; the
    # evaluation's latency, TTA and corruption figures).
    trainer_only = {key.removeprefix("test_") for key in set(training) - set(results)}
    assert trainer_only <= {"loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time"}
    evaluate_only = set(results) - set(training)
    assert all(
        k.startswith(("test_tta_", "test_mean_corr", "test_relative_mean")) or "ms_per" in k for k in evaluate_only
    )
    assert {"test_ece_calibrated", "test_nll_calibrated", "test_answered", "validation_ece_calibrated"} <= set(training)
    for key in ("test_ece_uncalibrated", "test_ece_calibrated"):
        assert results[key] == pytest.approx(training[key], abs=1e-4)
    stored = json.loads((tiny_run / "config.json").read_text())["calibration"]
    validation = json.loads((tiny_run / "eval_results.json").read_text())
    assert results["validation_ece_calibrated"] == stored["ece_after"]
    assert stored["ece_after"] == pytest.approx(validation["eval_ece_calibrated"], abs=1e-6)
    assert results["test_temperature"] == stored["temperature"]
    assert results["test_unsure_threshold"] == stored["unsure_threshold"]
    assert results["test_tta_views"] == 2 and results["test_tta_ms_per_image"] > 0 < results["test_ms_per_image"]
    assert 0 <= results["test_tta_accuracy"] <= 1

    robustness = json.loads((output / "robustness.json").read_text())
    assert set(robustness["corruptions"]) == {"brightness", "zoom"}
    accuracies = [a for c in robustness["corruptions"].values() for a in c["accuracy"].values()]
    assert len(accuracies) == 4 and set(robustness["corruptions"]["zoom"]["accuracy"]) == {"1", "5"}
    assert robustness["mean_corruption_accuracy"] == pytest.approx(np.mean(accuracies))
    assert robustness["clean_accuracy"] == results["test_accuracy"]
    assert robustness["relative_mean_corruption_accuracy"] == pytest.approx(
        robustness["mean_corruption_accuracy"] / results["test_accuracy"]
    )
    for line in ("accuracy", "corrupted accuracy", "TTA accuracy", "ECE (15 bins)", "unsure below"):
        assert line in done.stdout


DATA = [
    "--dataset", "synthetic", "--synthetic_num_classes", "4", "--synthetic_images_per_class", "24",
    "--synthetic_image_size", "32", "--disable_tqdm", "true",
]  # fmt: skip


@pytest.fixture
def uncalibrated_folder(untrained_folder) -> Path:
    return untrained_folder  # conftest.py: test_resnet with random weights, never calibrated


@pytest.mark.slow
def test_a_model_without_calibration_is_calibrated_on_validation_and_can_keep_it(uncalibrated_folder, tmp_path):
    fitted = main([str(uncalibrated_folder), *DATA, "--output_dir", str(tmp_path / "fitted")])
    assert "calibration" not in json.loads((uncalibrated_folder / "config.json").read_text())
    saved = main([str(uncalibrated_folder), *DATA, "--save_calibration", "true"])
    assert (uncalibrated_folder / "eval_test" / "test_results.json").is_file()  # the default output folder
    stored = json.loads((uncalibrated_folder / "config.json").read_text())["calibration"]
    assert stored["temperature"] == pytest.approx(fitted["test_temperature"])
    # Evaluated with the temperature folded into its weights, the model scores as with the temperature applied.
    assert saved["test_accuracy"] == fitted["test_accuracy"]
    for key in ("test_ece_uncalibrated", "test_ece_calibrated", "test_nll_calibrated", "test_unsure_threshold"):
        assert saved[key] == pytest.approx(fitted[key], abs=1e-5)


def test_the_data_set_must_have_the_model_classes_in_its_order():
    names = list(FLOWER_NAMES[:4])
    check_class_names(names, names)
    with pytest.raises(ClassMismatchError, match="another order"):
        check_class_names(names[::-1], names)
    with pytest.raises(ClassMismatchError, match="the data set's 5 classes are not the model's 4"):
        check_class_names(list(FLOWER_NAMES[:5]), names)


@pytest.mark.slow
def test_data_for_other_classes_ends_the_command_with_its_message_not_a_traceback(tiny_run, tmp_path, caplog):
    argv = [str(tiny_run), "--synthetic_num_classes", "5", "--output_dir", str(tmp_path), "--disable_tqdm", "true"]
    assert run_cli(main, argv) == 1
    assert "the data set's 5 classes are not the model's 6" in caplog.text


@pytest.mark.slow
def test_the_decoded_copy_gives_the_same_scores_as_the_original_images(tiny_run, tmp_path):
    common = [str(tiny_run), "--disable_tqdm", "true", "--update_card", "false", "--save_open_set_rule", "false"]
    cached = main([*common, "--output_dir", str(tmp_path / "cached")])
    original = main([*common, "--cache_images", "false", "--output_dir", str(tmp_path / "original")])
    timings = {key for key in cached if "ms_per_image" in key}
    assert {k: v for k, v in cached.items() if k not in timings} == {
        k: v for k, v in original.items() if k not in timings
    }
