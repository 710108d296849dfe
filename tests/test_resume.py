"""Crash-safe resume: SIGKILL at a save, Ctrl-C, half-written checkpoints, class counts, secrets and pickles."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import RESUME_ARGS, RESUME_COMPARED, RESUME_SECRET, ROOT, stage1_evaluations
from safetensors.torch import save_file
from transformers import TrainerCallback, TrainerControl, TrainerState

import flowers_hf.train
import train
from flowers_hf.core.cli import run_cli
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.training import interrupt, stages
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.checkpoints import (
    ClassMismatchError,
    check_starting_model,
    checkpoint_problem,
    last_complete_checkpoint,
)
from flowers_hf.training.interrupt import SaveOnInterrupt, TrainingInterrupted
from flowers_hf.training.layer_groups import parameter_groups
from flowers_hf.training.stages import Stage, run_stage

SECRET, ARGS = RESUME_SECRET, RESUME_ARGS  # 4 classes × 40 images, 4 epochs of 3 steps: see helpers.py


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # One thread here and in the subprocess: the same kernels in the same order (see the tolerance below), and
    # tiny convolutions run faster without waiting for a second thread on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [[], ["--freeze_backbone", "true", "--probe_views", "3"], ["--teacher", "TEACHER"]],
    # the classifier on precomputed views of a frozen backbone; distilled from a teacher, which no checkpoint holds
    ids=["images", "probe_views", "teacher"],
)
def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint_and_ends_the_same(
    tmp_path, caplog, request, extra
):
    if "TEACHER" in extra:  # the uninterrupted run of the same data, as the teacher
        extra = [str(request.getfixturevalue("resume_reference")[1]) if a == "TEACHER" else a for a in extra]
    if extra:
        reference_dir = tmp_path / "reference"
        reference = train.main([*ARGS, *extra, "--output_dir", str(reference_dir)])
    else:  # the run test_disk_full.py's full disk must end equal to as well: trained once for both
        reference, reference_dir = request.getfixturevalue("resume_reference")
    output = tmp_path / "killed"
    argv = [*ARGS, *extra, "--output_dir", str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killer = [sys.executable, str(ROOT / "tests" / "killed_while_saving.py"), "9"]  # the save that ends epoch 3
    done = subprocess.run([*killer, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    half = output / "stage1" / "checkpoint-9"
    assert (half / "model.safetensors").is_file() and not (half / "trainer_state.json").exists()

    with caplog.at_level(logging.INFO):
        resumed = train.main(argv)  # the same command again
    assert f"Not resuming from {half}: no trainer_state.json" in caplog.text
    assert f"Resuming stage 1 from checkpoint {output / 'stage1' / 'checkpoint-6'}" in caplog.text
    # Exactly equal, not approximately: the RNG states, sampler epoch, schedule, optimizer and early-stopping count
    # come back from the checkpoint, and on one machine with the same thread count every CPU kernel repeats its
    # floating-point operations in the same order. Any tolerance would hide a state that was not restored.
    assert {k: resumed[k] for k in RESUME_COMPARED} == {k: reference[k] for k in RESUME_COMPARED}
    assert stage1_evaluations(output) == stage1_evaluations(reference_dir)

    # The Hub token given on the command line is in no file of either run and in no log line.
    for path in [*output.rglob("*"), *reference_dir.rglob("*")]:
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text and SECRET not in done.stderr


class _CtrlC(TrainerCallback):
    """Sends this process a real SIGINT as optimizer step ``step`` begins."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_at_the_step_and_the_same_command_resumes(tmp_path, monkeypatch, caplog):
    build_trainer = flowers_hf.train.build_trainer

    def with_ctrl_c(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(_CtrlC(step=8))  # in the middle of epoch 3
        return trainer

    # Nothing learns at learning rate 0: epoch 1 stays the best, and patience 2 ends the stage after epoch 3.
    argv = [*ARGS, "--output_dir", str(tmp_path), "--learning_rate", "0", "--num_train_epochs", "6",
            "--early_stopping_patience", "2"]  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(flowers_hf.train, "build_trainer", with_ctrl_c)
    with caplog.at_level(logging.INFO), pytest.raises(TrainingInterrupted, match="at step 8"):
        train.main(argv)
    assert signal.getsignal(signal.SIGINT) is handler
    checkpoint = tmp_path / "stage1" / "checkpoint-8"
    assert checkpoint_problem(checkpoint) is None
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert [r["epoch"] for r in state["log_history"] if "eval_loss" in r] == [1, 2]  # no partial-epoch evaluation
    assert not (tmp_path / "stage1" / "trainer_state.json").exists()  # the stage is not marked finished
    assert "stage 1 stopped by Ctrl-C at step 8" in caplog.text and "run the same command again" in caplog.text

    monkeypatch.setattr(flowers_hf.train, "build_trainer", build_trainer)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train.main(argv)
    assert f"Resuming stage 1 from checkpoint {checkpoint}" in caplog.text
    # Early stopping's count (1 after epoch 2) came back with the checkpoint: a count started again from 0
    # would have trained epoch 4 too.
    assert json.loads((tmp_path / "stage1" / "trainer_state.json").read_text())["epoch"] == 3


def _args(tmp_path) -> FlowersTrainingArguments:
    return FlowersTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(interrupt, "_SAME_KEYPRESS_S", 0.0)
    callback, args, state, control = SaveOnInterrupt(), _args(tmp_path), TrainerState(), TrainerControl()
    handler = signal.getsignal(signal.SIGINT)
    callback.on_train_begin(args, state, control)
    os.kill(os.getpid(), signal.SIGINT)
    assert callback.interrupted
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is handler


def test_an_interrupted_run_exits_with_130():
    def interrupted(argv):
        raise TrainingInterrupted("stopped by Ctrl-C")

    assert run_cli(interrupted, []) == 130


def _checkpoint(folder: Path, step: int, num_classes: int = 4) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"fc.weight": torch.zeros(num_classes, 8)}, str(path / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    (path / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": num_classes}))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda c: (c / "trainer_state.json").write_text('{"global_st'), "trainer_state.json is not readable"),
        (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:-9]), "model.safe"),
        (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:-9]), "optimizer.pt"),
        (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
        (lambda c: (c / "trainer_state.json").write_text('{"global_step": 4}'), "for step 4"),
    ],
    ids=["no state", "cut state", "cut weights", "cut optimizer", "no weights", "other step"],
)
def test_a_half_written_newest_checkpoint_is_skipped(tmp_path, caplog, damage, problem):
    _checkpoint(tmp_path, 3)
    newest = _checkpoint(tmp_path, 12)
    damage(newest)
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert problem in caplog.text and str(newest) in caplog.text
    assert checkpoint_problem(tmp_path / "checkpoint-3") is None


def _model(num_classes: int):
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), [f"c{i}" for i in range(num_classes)])
    return model, parameter_groups(model.timm_model)


def test_resuming_checkpoints_of_another_class_count_stops_before_training(tmp_path):
    _checkpoint(tmp_path / "stage1", 6, num_classes=102)
    model, groups = _model(4)

    def no_trainer(args):
        raise AssertionError("no Trainer may be built")

    with pytest.raises(ClassMismatchError, match="102 classes, but the data set has 4"):
        run_stage(Stage(1, "all", None, 1, 1e-3), model, groups, _args(tmp_path), no_trainer)


def test_a_stage_whose_final_state_was_cut_short_is_resumed_not_skipped(tmp_path):
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "trainer_state.json").write_text('{"log_history": [{"ep')
    assert stages._finished_state(tmp_path / "stage1") is None


def test_a_run_folder_of_another_class_count_is_refused_as_model_with_the_way_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    weights = build_model(ModelArguments(model="test_resnet", pretrained=False), [str(i) for i in range(102)])
    save_file(weights.timm_model.state_dict(), str(run / "model.safetensors"))
    (run / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 102}))
    with pytest.raises(ClassMismatchError, match="--pretrained_path") as raised:
        check_starting_model(ModelArguments(model=str(run)), ["rose", "tulip"])
    # The way out the message gives: the backbone from the file, a new two-class classifier.
    model = build_model(ModelArguments(model="test_resnet", pretrained_path=str(run / "model.safetensors")), ["a", "b"])
    assert model.config.num_labels == 2 and f"--pretrained_path {run / 'model.safetensors'}" in str(raised.value)
    check_starting_model(ModelArguments(model=str(run), pretrained=False), ["rose", "tulip"])  # architecture only


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_that_would_run_code_when_unpickled_are_refused(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"state_dict": _RunsCode(marker)}, tmp_path / "weights.pth")
    with pytest.raises(Exception, match=r"(?i)weights_only|unsupported global"):
        build_model(ModelArguments(model="test_resnet", pretrained_path=str(tmp_path / "weights.pth")), ["a", "b"])
    assert not marker.exists()
