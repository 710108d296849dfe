"""The oldest supported transformers and huggingface_hub (flowers_hf/core/versions.py), as the lent GPU machines
pair them: ``make oldest`` installs them in ``.venv-oldest``, put first on the path over the pinned environment.
The dry GPU check then runs through on them (its compile comparison, its recipes step: train.py, two short
trainings, and the benchmark's training paths), and so do the Trainer's tests. Skipped without ``.venv-oldest``,
unless FLOWERS_REQUIRE_OLDEST=1 (as in CI, where ``make test`` builds it)."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, dry_gpu_check
from test_bench import check_dry_gpu_summary

from flowers_hf.core.versions import SUPPORTED

OLDEST = ROOT / ".venv-oldest"
OVERLAID = ("transformers", "huggingface-hub")


@pytest.mark.slow
def test_the_dry_gpu_check_runs_on_the_oldest_supported_versions(tmp_path):
    if not (OLDEST / ".installed").is_file():
        if os.environ.get("FLOWERS_REQUIRE_OLDEST") == "1":
            pytest.fail(f"{OLDEST} is missing and FLOWERS_REQUIRE_OLDEST=1: run make oldest")
        pytest.skip(f"{OLDEST} is missing (make oldest)")
    summary = dry_gpu_check(tmp_path, PYTHONPATH=str(OLDEST))
    assert {name: summary["versions"][name] for name in OVERLAID} == {name: SUPPORTED[name][0] for name in OVERLAID}
    check_dry_gpu_summary(summary, tmp_path)


@pytest.mark.slow
def test_the_trainer_overrides_hold_on_the_oldest_supported_versions():
    # ClassWeightedTrainer overrides Trainer internals written against the pinned transformers: its tests (the
    # weighted loss under accumulation, checkpointing, the batch-size finder) run again on the oldest.
    if not (OLDEST / ".installed").is_file():
        pytest.skip(f"{OLDEST} is missing (make oldest)")  # the test above fails in CI without it
    env = {**os.environ, "PYTHONPATH": f"{OLDEST}{os.pathsep}{ROOT}"}
    found = subprocess.run(
        [sys.executable, "-c", "import transformers; print(transformers.__version__)"], env=env, capture_output=True
    )
    assert found.stdout.decode().strip() == SUPPORTED["transformers"][0]
    tests = ["tests/test_trainer.py", "tests/test_trainer_options.py", "-m", "not slow", "-p", "no:cacheprovider"]
    done = subprocess.run([sys.executable, "-m", "pytest", *tests], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
