"""``python -m flowers_hf.data`` as a person runs it, in a subprocess: its JSON summary, exit status and messages."""

import json
import os
import subprocess
import sys

import pytest
from helpers import OXFORD_LABELS, OXFORD_SPLITS

from flowers_hf.data.labels import FLOWER_NAMES

pytestmark = pytest.mark.slow  # every test starts the command in a subprocess

KEYS = {"source", "num_classes", "class_names", "splits", "class_counts"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowers_hf.data", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )


def test_synthetic_summary_is_one_json_object_on_stdout():
    result = _run("synthetic", "--synthetic_num_classes", "3", "--synthetic_images_per_class", "8")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # nothing else on stdout: logs go to stderr
    assert set(summary) == KEYS
    assert summary["source"] == "synthetic"
    assert summary["num_classes"] == 3
    assert summary["class_names"] == list(FLOWER_NAMES[:3])
    assert summary["splits"] == {"train": 3, "validation": 3, "test": 18}
    assert summary["class_counts"] == {"train": [1, 1, 1], "validation": [1, 1, 1], "test": [6, 6, 6]}
    assert "Synthetic flowers" in result.stderr


def test_oxford_folder_summary_counts_each_class(oxford_dir):
    result = _run(str(oxford_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["num_classes"] == 102
    assert summary["splits"] == {"train": 8, "validation": 6, "test": 16}
    for split, key in (("train", "trnid"), ("validation", "valid"), ("test", "tstid")):
        expected = [0] * 102
        for image_id in OXFORD_SPLITS[key]:
            expected[OXFORD_LABELS[image_id - 1] - 1] += 1
        assert summary["class_counts"][split] == expected


def test_an_unusable_source_exits_non_zero_with_a_message(tmp_path):
    result = _run(str(tmp_path / "missing" / "dir"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "not a folder" in result.stderr


def test_offline_hub_source_names_alternatives():
    result = _run("dpdl-benchmark/oxford_flowers102")
    assert result.returncode == 1
    assert "--dataset synthetic" in result.stderr
