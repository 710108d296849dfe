"""A real full disk: train.py on a small tmpfs of its own (a private mount namespace: ``unshare --mount
--map-root-user``), filled up while it writes the decoded copy, a checkpoint and the final model folder. Each time
the run stops with the one-line ``DiskFullError`` and no traceback, leaves nothing half-written that a later step
would use, and once the ballast is deleted the same command ends with the uninterrupted run's metrics.

Skipped where the machine allows no user namespaces, except where ``FLOWERS_REQUIRE_UNSHARE=1`` (as in CI).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import RESUME_ARGS, RESUME_COMPARED, ROOT, stage1_evaluations

pytestmark = pytest.mark.slow  # every test trains in a subprocess

TMPFS_MB = 32  # the run takes about 12 MB: its data, copies, two checkpoints, the model folder and reports
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # one thread: reruns repeat exactly


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory):
    """A tmpfs of ``TMPFS_MB`` mounted on an empty folder in a mount namespace of its own, held by a sleeping process;
    this process reaches it through ``/proc/<pid>/root``. Nothing is mounted where anyone else sees it."""
    mount_point = tmp_path_factory.mktemp("tmpfs_mount_point")
    script = f"mount -t tmpfs -o size={TMPFS_MB}m tmpfs {mount_point} && echo mounted && exec sleep 3600"
    holder = None
    if shutil.which("unshare"):
        holder = subprocess.Popen(
            ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said = holder.stdout.readline().strip()
    if holder is None or said != "mounted":
        reason = f"no private tmpfs here: {'no unshare command' if holder is None else said or 'unshare failed'}"
        if holder is not None:
            holder.kill()
        if os.environ.get("FLOWERS_REQUIRE_UNSHARE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(f"/proc/{holder.pid}/root{mount_point}")
    assert shutil.disk_usage(root).total == TMPFS_MB * 2**20  # the tmpfs, not the folder under it
    yield root
    holder.kill()
    holder.wait()


def _command(output: Path, moment: str | None = None, leave: int = 0, ballast: Path | None = None) -> list[str]:
    script = [str(ROOT / "train.py")] if moment is None else [str(ROOT / "tests" / "fills_the_disk.py")]
    filling = [] if moment is None else [moment, str(leave), str(ballast)]
    return [sys.executable, *script, *filling, *RESUME_ARGS, "--output_dir", str(output)]


def _train(command: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**ENV, "HF_DATASETS_CACHE": str(cache)}  # the data and its decoded copies on the same disk
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _results(output: Path) -> dict:
    results = json.loads((output / "test_results.json").read_text())
    return {key: results[key] for key in RESUME_COMPARED}


@pytest.fixture(scope="module")
def baseline(resume_reference) -> Path:
    """The uninterrupted run, on the ordinary disk: conftest's, trained once for test_resume.py and test_disk_full.py
    too (in-process on one thread; a subprocess on one thread repeats it exactly, as test_resume.py shows)."""
    return resume_reference[1]


@pytest.fixture
def disk(tmpfs):
    """The tmpfs, emptied after each test."""
    yield tmpfs
    for path in tmpfs.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _stops_with_one_line(done: subprocess.CompletedProcess, written: Path) -> str:
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"DiskFullError: no space left on the device writing {written}" in last, done.stderr[-3000:]
    assert "MB are free there" in last
    return last


def _rerun_ends_as_the_baseline(disk: Path, output: Path, ballast: Path, baseline: Path) -> str:
    ballast.unlink()  # space freed
    rerun = _train(_command(output), disk / "cache")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _results(output) == _results(baseline)
    assert stage1_evaluations(output) == stage1_evaluations(baseline)
    return rerun.stderr


def test_a_disk_full_while_the_decoded_copy_is_written(disk, baseline):
    output, ballast = disk / "run", disk / "ballast"
    done = _train(_command(output, "copy", 64 * 1024, ballast), disk / "cache")
    _stops_with_one_line(done, disk / "cache")
    assert "builds the copy again" in done.stderr
    # No partial file left (datasets' temporary one removed), and every cache file there is a whole Arrow stream.
    assert list((disk / "cache").rglob("tmp*")) == []
    for cached in (disk / "cache").rglob("cache-*.arrow"):
        pa.ipc.open_stream(cached).read_all()  # raises on a file cut short
    assert not output.exists() or not list(output.rglob("checkpoint-*"))
    _rerun_ends_as_the_baseline(disk, output, ballast, baseline)


def test_a_disk_full_while_a_checkpoint_is_written(disk, baseline):
    # Room for the checkpoint's weights but not its optimizer state: torch.save's zip writer fails as in the issue.
    output, ballast = disk / "run", disk / "ballast"
    leave = (baseline / "model.safetensors").stat().st_size + 64 * 1024
    done = _train(_command(output, "checkpoint", leave, ballast), disk / "cache")
    _stops_with_one_line(done, output / "stage1" / "checkpoint-9")
    assert "resumes from the last complete checkpoint" in done.stderr
    assert not (output / "stage1" / "checkpoint-9").exists()  # cut short: removed
    assert (output / "stage1" / "checkpoint-6" / "trainer_state.json").is_file()
    rerun = _rerun_ends_as_the_baseline(disk, output, ballast, baseline)
    assert f"Resuming stage 1 from checkpoint {output / 'stage1' / 'checkpoint-6'}" in rerun


def test_a_disk_full_while_the_model_folder_is_written(disk, baseline):
    output, ballast = disk / "run", disk / "ballast"
    leave = (baseline / "model.safetensors").stat().st_size // 2
    done = _train(_command(output, "model", leave, ballast), disk / "cache")
    _stops_with_one_line(done, output)
    assert not (output / "model.safetensors").exists() and not (output / "config.json").exists()
    assert not list(output.glob(".writing-*"))
    _rerun_ends_as_the_baseline(disk, output, ballast, baseline)
