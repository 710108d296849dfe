"""Faults at scale, on two CPU processes over gloo: two "machines" (two launches on this host), a process killed
mid-epoch, while a checkpoint is written and while the final model is written; each ends every process within
60 s with a non-zero status naming the rank, and the same command then ends as an uninterrupted run."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, free_port
from test_train import TINY

# One stage: 80 training images, batch 16 on each of 2 processes, 3 steps an epoch, a checkpoint an epoch, 3 epochs.
ARGS = [*TINY, "--stage2_epochs", "0", "--num_train_epochs", "3"]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
COMPARED = ("test_accuracy", "test_loss", "test_macro_f1")


def _launch(output: Path, *extra: str, script: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*LAUNCH, *extra, *(script or [str(ROOT / "train.py")]), *ARGS, "--output_dir", str(output)]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def _results(output: Path) -> dict:
    results = json.loads((output / "test_results.json").read_text())
    return {key: results[key] for key in COMPARED}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted two-process run of one launch."""
    output = tmp_path_factory.mktemp("reference")
    done = _launch(output, "--num_machines", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def _machine(
    rank: int, port: str, output: Path, script: list[str] | None = None, extra: tuple[str, ...] = ()
) -> subprocess.Popen:
    """One of two "machines" of a launch, on this host: one process, rendezvous at 127.0.0.1."""
    machine = ["--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", port]  # fmt: skip
    script = script or [str(ROOT / "train.py")]
    command = [*LAUNCH, *machine, *script, *ARGS, *extra, "--output_dir", str(output)]
    return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_machines_train_evaluate_and_write_the_run_folder_once_as_one_launch_of_two(reference, tmp_path):
    output, port = tmp_path / "two_machines", str(free_port())
    machines = [_machine(rank, port, output) for rank in (0, 1)]
    logs = [machine.communicate(timeout=600)[1] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    # Only the main process (machine 0) writes the run folder, once; the metrics are the one launch's.
    assert [log.count("Model, reports and plots written to") for log in logs] == [1, 0]
    assert _results(output) == _results(reference)
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in reference.iterdir())


def _processes_of(output: Path) -> list[psutil.Process]:
    alive = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(output) in " ".join(process.info["cmdline"] or []):
                alive.append(process)
        except psutil.Error:
            continue
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mid_epoch", "checkpoint", "final_model"])
def test_a_killed_process_ends_the_launch_within_a_minute_and_the_rerun_ends_as_an_uninterrupted_run(
    reference, tmp_path, mode
):
    output, flag = tmp_path / "killed", tmp_path / "flag"
    done = _launch(output, "--num_machines", "1", script=[str(ROOT / "tests" / "ddp_dies.py"), mode, str(flag)])
    ended = time.time()
    assert done.returncode != 0
    assert ended - float(flag.with_suffix(".died").read_text()) < 60  # not the collective's 30-minute timeout
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", done.stderr) and "SIGKILL" in done.stderr
    assert _processes_of(output) == []  # every process of the launch has ended
    if mode == "final_model":  # killed mid-write: no weights file that pipeline() would load half-written
        assert not (output / "model.safetensors").exists()

    rerun = _launch(output, "--num_machines", "1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if mode != "final_model":
        assert "Resuming stage 1 from checkpoint" in rerun.stderr
    assert _results(output) == _results(reference)


@pytest.mark.slow
def test_a_process_killed_on_one_of_two_machines_ends_the_other_machine_too_within_a_minute(tmp_path):
    output, flag, port = tmp_path / "killed", tmp_path / "flag", str(free_port())
    script = [str(ROOT / "tests" / "ddp_dies.py"), "mid_epoch", str(flag)]
    machines = [_machine(rank, port, output, script) for rank in (0, 1)]
    logs = [machine.communicate(timeout=600)[1] for machine in machines]
    ended = time.time()
    # Machine 0's process was waiting for machine 1's in a collective: gloo sees the peer gone and it ends too.
    assert all(machine.returncode != 0 for machine in machines)
    assert ended - float(flag.with_suffix(".died").read_text()) < 60
    assert re.search(r"rank\s*:\s*1 \(local_rank: 0\)", logs[1]) and "SIGKILL" in logs[1]
    assert _processes_of(output) == []


def _two_machines(outputs: tuple[Path, Path], script: list[str] | None = None, *extra: str) -> list[str]:
    """Both machines of a launch, to their end; each one's log."""
    port = str(free_port())
    machines = [_machine(rank, port, outputs[rank], script, extra) for rank in (0, 1)]
    logs = [machine.communicate(timeout=600)[1] for machine in machines]
    if script is None:
        assert [machine.returncode for machine in machines] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    else:
        assert all(machine.returncode != 0 for machine in machines), logs[0][-2000:] + logs[1][-2000:]
    return logs


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False], ids=["shared_folder", "folder_per_machine"])
def test_two_machines_both_killed_mid_epoch_resume_with_the_same_command_and_end_as_an_uninterrupted_run(
    reference, tmp_path, shared
):
    # shared: one --output_dir on a shared file system (the default). Else machines without one: each its own
    # folder and --save_on_each_node, so each keeps the checkpoints it resumes from.
    outputs = (tmp_path / "machine0",) * 2 if shared else (tmp_path / "machine0", tmp_path / "machine1")
    extra = () if shared else ("--save_on_each_node", "true")
    dies = [str(ROOT / "tests" / "ddp_dies.py"), "all_mid_epoch", str(tmp_path / "flag")]
    _two_machines(outputs, dies, *extra)  # every process killed as step 5 begins: after the checkpoint of step 3
    for output in set(outputs):
        assert (output / "stage1" / "checkpoint-3" / "trainer_state.json").is_file()
        assert not (output / "stage1" / "checkpoint-6").exists()
    assert sorted(p.name for p in (outputs[1] / "stage1" / "checkpoint-3").glob("rng_state*")) == (
        ["rng_state_0.pth", "rng_state_1.pth"] if shared else ["rng_state_1.pth"]
    )

    logs = _two_machines(outputs, None, *extra)  # the same command again
    for log, output in zip(logs, outputs, strict=True):
        assert f"Resuming stage 1 from checkpoint {output / 'stage1' / 'checkpoint-3'}" in log
    assert _results(outputs[0]) == _results(reference)
    assert (outputs[1] / "stage1" / "checkpoint-9" / "trainer_state.json").is_file()  # machine 1 saved on its own
