"""train.py end to end on tiny synthetic data: learning, every artifact, resuming, presets, two processes."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT
from safetensors.torch import load_file
from transformers import pipeline

import train
from flowers_hf.core.cli import parse_args
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments

ARTIFACTS = [
    "model.safetensors",
    "config.json",
    "README.md",
    "train_config.yaml",
    "class_weights.json",
    "test_results.json",
    "eval_results.json",
    "classification_report.json",
    "confusion_matrix.png",
    "loss_curve.png",
    "accuracy_curve.png",
    "augmentation_samples.png",
]
TEST_KEYS = {"test_accuracy", "test_top5_accuracy", "test_macro_f1", "test_mean_per_class_accuracy"}

# 4 classes × 160 images of 32 px (20 / 20 / 120 per class), test_resnet, stage 1 on a frozen backbone, then all.
TINY = [
    "--dataset", "synthetic", "--synthetic_num_classes", "4", "--synthetic_images_per_class", "160",
    "--synthetic_image_size", "32", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
    "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--learning_rate", "0.01",
    "--num_train_epochs", "2", "--freeze_backbone", "true", "--stage2_epochs", "3", "--stage2_unfreeze", "-1",
    "--stage2_learning_rate", "0.01", "--dataloader_num_workers", "0", "--dataloader_persistent_workers", "false",
    "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str]]:
    output = tmp_path_factory.mktemp("run")
    argv = [*TINY, "--output_dir", str(output)]
    train.main(argv)
    return output, argv


@pytest.mark.slow
def test_run_learns_and_writes_every_artifact(run):
    output, _ = run
    assert sorted(p for p in ARTIFACTS if not (output / p).is_file()) == []
    results = json.loads((output / "test_results.json").read_text())
    assert set(results) >= TEST_KEYS
    assert results["test_accuracy"] > 0.5  # chance is 0.25
    report = json.loads((output / "classification_report.json").read_text())
    assert report["pink primrose"]["support"] == 120
    weights = json.loads((output / "class_weights.json").read_text())
    assert weights == {"strategy": "balanced", "weights": [1.0, 1.0, 1.0, 1.0]}  # a balanced split


@pytest.mark.slow
def test_both_stages_ran_with_their_own_schedule(run):
    output, _ = run
    for stage, epochs in (("stage1", 2), ("stage2", 3)):
        state = json.loads((output / stage / "trainer_state.json").read_text())
        assert state["epoch"] == epochs
        assert state["log_history"][0]["learning_rate"] > 0
        assert any("train_accuracy" in r for r in state["log_history"])
        assert any("eval_accuracy" in r for r in state["log_history"])


def _weights(checkpoint: Path) -> dict:
    return {k.removeprefix("timm_model."): v for k, v in load_file(str(checkpoint / "model.safetensors")).items()}


@pytest.mark.slow
def test_stage_two_starts_a_fresh_schedule(run):
    output, _ = run
    rates = [
        [r["learning_rate"] for r in json.loads((output / stage / "trainer_state.json").read_text())["log_history"]
         if "learning_rate" in r]
        for stage in ("stage1", "stage2")
    ]  # fmt: skip
    # Linear decay: stage 1 ends near zero; stage 2 starts again from its own peak (0.01 here).
    assert rates[1][0] > 0.005 > rates[0][-1]


@pytest.mark.slow
def test_early_stopping_ends_a_stage_that_stopped_improving(tmp_path):
    argv = [*TINY, "--output_dir", str(tmp_path), "--learning_rate", "0", "--num_train_epochs", "6",
            "--stage2_epochs", "0", "--early_stopping_patience", "2"]  # fmt: skip
    train.main(argv)
    state = json.loads((tmp_path / "stage1" / "trainer_state.json").read_text())
    # Nothing learns at learning rate 0: epoch 1 stays the best, and two more epochs without gain end it.
    assert state["epoch"] == 3
    assert Path(state["best_model_checkpoint"]).name == "checkpoint-5"


@pytest.mark.slow
def test_stage_one_trains_the_head_only_and_stage_two_the_backbone_too(run):
    output, _ = run
    first, second = (_weights(output / "stage1" / f"checkpoint-{step}") for step in (5, 10))  # epochs 1 and 2
    final = load_file(str(output / "model.safetensors"))
    assert torch.equal(first["conv1.0.weight"], second["conv1.0.weight"])
    assert torch.equal(first["bn1.running_mean"], second["bn1.running_mean"])  # frozen statistics
    assert not torch.equal(first["fc.weight"], second["fc.weight"])
    assert not torch.equal(second["conv1.0.weight"], final["conv1.0.weight"])  # stage 2 trained the stem


@pytest.mark.slow
def test_each_stage_keeps_its_best_and_its_last_checkpoint(run):
    output, _ = run
    for stage in ("stage1", "stage2"):
        state = json.loads((output / stage / "trainer_state.json").read_text())
        kept = sorted(p.name for p in (output / stage).glob("checkpoint-*"))
        last = f"checkpoint-{state['global_step']}"
        assert last in kept and Path(state["best_model_checkpoint"]).name in kept
        assert len(kept) <= 2


@pytest.mark.slow
def test_output_folder_serves_the_pipeline_with_flower_names(run):
    output, _ = run
    classifier = pipeline("image-classification", model=str(output))
    data = load_data(args=parse_args((DataArguments,), TINY[:8])[0]).splits
    top = classifier(data["test"][0]["image"])
    assert len(top) == 4 and top[0]["label"] in data["test"].features["label"].names


@pytest.mark.slow
def test_saved_config_is_a_preset_that_parses_back(run):
    output, _ = run
    model_args, data_args, _, args = parse_args(train.ARGUMENTS, ["--config", str(output / "train_config.yaml")])
    assert model_args.model == "test_resnet" and data_args.synthetic_num_classes == 4
    assert args.stage2_epochs == 3 and args.output_dir == str(output)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_run(run, tmp_path):
    output, argv = run
    again = train.main([*argv[:-2], "--output_dir", str(tmp_path)])
    before = json.loads((output / "test_results.json").read_text())
    assert again["test_loss"] == pytest.approx(before["test_loss"], rel=1e-5)
    assert again["test_accuracy"] == before["test_accuracy"]


@pytest.mark.slow
def test_rerun_of_a_finished_run_trains_nothing_and_gives_the_same_scores(run, caplog):
    output, argv = run
    before = json.loads((output / "test_results.json").read_text())
    with caplog.at_level(logging.INFO):
        again = train.main(argv)
    assert "Stage 1 finished earlier" in caplog.text and "Stage 2 finished earlier" in caplog.text
    assert again["test_accuracy"] == pytest.approx(before["test_accuracy"])


@pytest.mark.slow
def test_interrupted_stage_resumes_from_its_last_checkpoint(run, tmp_path, caplog):
    output, argv = run
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    # As if killed in stage 2 after its second epoch: no end-of-stage state, no third checkpoint.
    (copy / "stage2" / "trainer_state.json").unlink()
    checkpoints = sorted((copy / "stage2").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for checkpoint in checkpoints:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        if state["epoch"] > 2:
            shutil.rmtree(checkpoint)
    last = max((copy / "stage2").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    argv = [*argv[:-2], "--output_dir", str(copy)]
    with caplog.at_level(logging.INFO):
        metrics = train.main(argv)
    assert f"Resuming stage 2 from checkpoint {last}" in caplog.text
    state = json.loads((copy / "stage2" / "trainer_state.json").read_text())
    assert state["epoch"] == 3
    assert set(metrics) >= TEST_KEYS


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_parse(preset):
    model_args, data_args, _, args = parse_args(train.ARGUMENTS, ["--config", str(preset)])
    assert data_args.dataset
    if preset.name != "synthetic_photos.yaml":  # a data preset; every other one is a training preset
        assert args.output_dir == f"runs/{preset.stem}" and model_args.model


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "stages"),
    [("resnet18_finetune.yaml", 1), ("efficientnet_b3_finetune.yaml", 1)],
)  # fmt: skip
def test_presets_start_training(preset, stages, tmp_path):
    # Their real runs need the Hub (data and ImageNet weights); here: random init, tiny data, one step a stage.
    # resnet18.yaml and efficientnet_b3.yaml train the same way, one step a stage, in test_real_path.py (from a
    # stand-in of the Hub), which checks their scores and stages as this test does.
    argv = [
        "--config", str(ROOT / "configs" / preset), "--output_dir", str(tmp_path), "--pretrained", "false",
        "--dataset", "synthetic", "--synthetic_num_classes", "4", "--synthetic_images_per_class", "8",
        "--synthetic_image_size", "32", "--image_size", "32", "--max_steps", "1", "--per_device_train_batch_size", "4",
        "--dataloader_num_workers", "0", "--dataloader_persistent_workers", "false", "--disable_tqdm", "true",
    ]  # fmt: skip
    metrics = train.main(argv)
    assert set(metrics) >= TEST_KEYS
    assert len(list(tmp_path.glob("stage*/trainer_state.json"))) == stages


# Training on an Oxford folder and on an ImageFolder tree without a validation split (one step each): in
# test_validate.py (an Oxford folder with bad files planted) and test_any_dataset.py (a digit-named tree), which
# check the scores and the classes as this file did.


@pytest.mark.slow
def test_a_run_folder_is_a_starting_point(run, tmp_path):
    output, _ = run
    argv = [*TINY, "--output_dir", str(tmp_path), "--model", str(output), "--pretrained", "true", "--max_steps", "1"]
    metrics = train.main(argv)
    # One more step on the trained model keeps it far above chance (a new head would be near 0.25).
    assert metrics["test_accuracy"] > 0.5


@pytest.mark.slow
def test_fp16_asked_for_on_a_cpu_trains_in_fp32(tmp_path):
    metrics = train.main([*TINY, "--output_dir", str(tmp_path), "--precision", "fp16", "--max_steps", "1"])
    assert set(metrics) >= TEST_KEYS
    state = json.loads((tmp_path / "stage1" / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    saved = (tmp_path / "train_config.yaml").read_text()
    # The saved preset keeps the request, for a machine with a GPU; this machine trained in fp32.
    assert "precision: fp16" in saved and "use_cpu: false" in saved


@pytest.mark.slow
def test_offline_pretrained_weights_stop_the_command_with_the_fix(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "resnet18.yaml"),
               *TINY[:8], "--output_dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "--pretrained false" in done.stderr and "--pretrained_path" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_two_process_cpu_run_with_accelerate(tmp_path):
    output = tmp_path / "ddp"
    command = [
        # accelerate 1.15's --cpu starts a single process unless given an mpirun hostfile; --multi_gpu on a
        # machine without GPUs starts two through torchrun, and the Trainer then runs DDP over gloo.
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"), *TINY,
        "--output_dir", str(output),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p for p in ARTIFACTS if not (output / p).is_file()) == []
    state = json.loads((output / "stage1" / "trainer_state.json").read_text())
    # 80 training images, batch 16 per process on 2 processes: 3 optimizer steps an epoch (the last short).
    assert state["global_step"] == 6
    assert json.loads((output / "test_results.json").read_text())["test_accuracy"] > 0.25
