"""A full disk: a write that fails with ENOSPC (a checkpoint, the decoded-image cache, the final model folder, the
reports) stops the run with one line naming the path and the space; what is left stays usable, and the same
command then finishes. The errors are injected at the write calls (OSError(ENOSPC)), as a small file system of its
own would raise them."""

import errno
import json
import logging
from pathlib import Path

import datasets
import pytest
import torch
from helpers import RESUME_ARGS as ARGS
from helpers import RESUME_COMPARED as COMPARED
from helpers import stage1_evaluations
from huggingface_hub import ModelCard
from transformers import Trainer, pipeline

import train
from flowers_hf.core.cli import parse_args, run_cli
from flowers_hf.core.disk import MB, atomic_folder, disk_full_guard, free_mb
from flowers_hf.core.errors import DiskFullError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.cache import cache_resized
from flowers_hf.data.pixels import rgb_array
from flowers_hf.model import modeling
from flowers_hf.reporting import run_folder

FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as test_resume: the same kernels in the same order, so reruns repeat exactly
    yield
    torch.set_num_threads(threads)


def _run_failing(argv: list[str], caplog) -> str:
    """Run train.py as its command line does; the one error line it logs."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="flowers_hf"):
        assert run_cli(train.main, argv) == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return line


def test_the_guard_names_the_path_and_the_space_and_removes_what_was_cut_short(tmp_path):
    partial = tmp_path / "checkpoint-9"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    expected = r"writing .*checkpoint-9: it needs about 3.0 MB and [\d,.]+ MB are free"
    with (
        pytest.raises(DiskFullError, match=expected),
        disk_full_guard(partial, 3 * 1024 * 1024, then="run it again", remove=partial),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not partial.exists()
    with pytest.raises(PermissionError), disk_full_guard(partial, 1):  # other errors pass through unchanged
        raise PermissionError("read-only")


def test_an_error_without_an_errno_is_a_full_disk_only_when_less_than_the_write_needs_is_free(tmp_path):
    needed = int(free_mb(tmp_path) * MB) + MB
    cut = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    with pytest.raises(DiskFullError, match="MB are free there"), disk_full_guard(tmp_path, needed):
        raise cut
    with pytest.raises(RuntimeError) as passed, disk_full_guard(tmp_path, 1024):  # space left: another fault
        raise cut
    assert passed.value is cut
    with pytest.raises(OSError) as passed, disk_full_guard(tmp_path, needed):  # an errno that is not ENOSPC
        raise PermissionError(errno.EACCES, "denied")
    assert not isinstance(passed.value, DiskFullError)


def test_an_atomic_folder_moves_nothing_when_the_write_fails(tmp_path):
    with pytest.raises(OSError), atomic_folder(tmp_path / "model", last=("model.safetensors",)) as staging:
        (staging / "config.json").write_text("{}")
        (staging / "model.safetensors").write_bytes(b"half")
        raise FULL
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == []  # no staging folder left either


@pytest.mark.slow
def test_a_checkpoint_on_a_full_disk_stops_the_run_and_the_rerun_resumes_from_the_last_complete_one(
    tmp_path, monkeypatch, caplog, resume_reference
):
    reference, reference_dir = resume_reference  # trained once, for test_resume.py too
    output = tmp_path / "full"
    argv = [*ARGS, "--output_dir", str(output)]
    save_rng_state = Trainer._save_rng_state

    def full_at_step_9(self, output_dir):  # the checkpoint's weights are written by then, its state not yet
        if self.state.global_step == 9:
            raise FULL
        save_rng_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", full_at_step_9)
    line = _run_failing(argv, caplog)
    assert line.startswith("DiskFullError: no space left on the device writing ")
    assert str(output / "stage1" / "checkpoint-9") in line and "MB are free" in line and "resumes" in line
    assert not (output / "stage1" / "checkpoint-9").exists()  # the checkpoint cut short is gone
    assert (output / "stage1" / "checkpoint-6" / "trainer_state.json").is_file()  # the last complete one stays

    monkeypatch.setattr(Trainer, "_save_rng_state", save_rng_state)  # space freed
    with caplog.at_level(logging.INFO):
        resumed = train.main(argv)
    assert f"Resuming stage 1 from checkpoint {output / 'stage1' / 'checkpoint-6'}" in caplog.text
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert stage1_evaluations(output) == stage1_evaluations(reference_dir)


@pytest.mark.slow
def test_the_final_model_folder_is_never_left_half_written_and_reports_on_a_full_disk_are_written_by_the_rerun(
    tmp_path, monkeypatch, caplog
):
    # One run, three attempts: the disk fills up while the model folder is written, then while the reports are,
    # then there is space again. Training ends in the first; the others find the stage finished.
    output = tmp_path / "run"
    argv = [*ARGS, "--num_train_epochs", "1", "--output_dir", str(output)]
    save_for_hf = modeling.save_for_hf

    def full_after_half_the_weights(model, folder, **kwargs):
        save_for_hf(model, folder, **kwargs)
        weights = next(p for p in Path(folder).iterdir() if p.suffix == ".safetensors")
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # the disk filled up mid-file
        raise FULL

    monkeypatch.setattr(modeling, "save_for_hf", full_after_half_the_weights)
    line = _run_failing(argv, caplog)
    assert f"writing {output}:" in line and "writes the folder again" in line
    assert not (output / "model.safetensors").exists() and not (output / "config.json").exists()
    assert not list(output.glob(".writing-*"))

    def full(*args, **kwargs):
        raise FULL

    monkeypatch.setattr(modeling, "save_for_hf", save_for_hf)
    monkeypatch.setattr(run_folder, "write_model_card", full)
    line = _run_failing(argv, caplog)
    assert f"writing {output}: it needs about 20 MB" in line
    assert (output / "model.safetensors").is_file() and not (output / "README.md").exists()
    image = load_data(args=parse_args((DataArguments,), argv[:8])[0]).splits["test"][0]["image"]
    assert len(pipeline("image-classification", model=str(output))(image)) == 4  # written whole before the reports

    monkeypatch.undo()
    metrics = train.main(argv)  # the stage is finished: only the folder and the reports are written
    assert len(pipeline("image-classification", model=str(output))(image)) == 4  # a whole model, loadable
    assert json.loads((output / "test_results.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    card = ModelCard.load(output / "README.md")  # the card of this run's scores, not an empty file
    (accuracy,) = [r for r in card.data.eval_results if (r.metric_type, r.dataset_split) == ("accuracy", "test")]
    assert accuracy.metric_value == round(metrics["test_accuracy"], 4)
    assert "test_resnet" in card.text


def test_the_decoded_copy_is_never_used_half_written(tmp_path, monkeypatch, tiny_synthetic):
    split = tiny_synthetic["train"]
    cached_before = {f["filename"] for f in split.cache_files}
    folder = tmp_path / "copy"
    split.save_to_disk(folder)
    source = datasets.load_from_disk(str(folder))
    calls = {"n": 0}

    def full(self, *args, **kwargs):
        calls["n"] += 1
        raise FULL

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_batch", full)
    with pytest.raises(DiskFullError, match=rf"writing {folder}: it needs about"):
        cache_resized(source, 24)
    assert calls["n"] == 1
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("cache-")) == []  # nothing half-written kept
    monkeypatch.undo()
    copy = cache_resized(source, 24)
    assert len(copy) == len(source) and min(rgb_array(copy[0]["image"]).shape[:2]) == 24
    assert {f["filename"] for f in split.cache_files} == cached_before
