"""Shared fixtures: tiny local data sets in every source layout, written fresh for the session.

Plain helpers and constants (no fixtures) live in helpers.py: ``from helpers import …``.
"""

import os
import shutil
import tempfile

# Before anything imports huggingface_hub or datasets: no network, and caches that start empty.
_HF_HOME = tempfile.mkdtemp(prefix="flowers_hf_tests_hf_home_")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from gradio_client import Client  # noqa: E402
from helpers import (  # noqa: E402
    RESUME_ARGS,
    ROOT,
    TINY_RUN,
    free_port,
    write_oxford_files,
    write_oxford_jpgs,
)
from PIL import Image  # noqa: E402

from flowers_hf.data import load_data  # noqa: E402
from flowers_hf.data.arguments import DataArguments, TransformArguments  # noqa: E402
from flowers_hf.data.labels import FLOWER_NAMES  # noqa: E402
from flowers_hf.data.preprocessing import resolve_preprocessing  # noqa: E402
from flowers_hf.model.arguments import ModelArguments  # noqa: E402
from flowers_hf.model.modeling import build_model, save_model  # noqa: E402


@pytest.fixture(scope="session")
def oxford_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oxford")
    write_oxford_files(root)
    write_oxford_jpgs(root / "jpg")
    return root


@pytest.fixture(scope="session")
def oxford_tgz_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oxford_tgz")
    write_oxford_files(root)
    staging = tmp_path_factory.mktemp("oxford_staging")
    write_oxford_jpgs(staging / "jpg")
    with tarfile.open(root / "102flowers.tgz", "w:gz") as tar:
        tar.add(staging / "jpg", arcname="jpg")
    return root


@pytest.fixture(scope="session")
def tiny_args() -> DataArguments:
    return DataArguments(
        dataset="synthetic", synthetic_num_classes=4, synthetic_images_per_class=8, synthetic_image_size=32
    )


@pytest.fixture(scope="session")
def tiny_synthetic(tiny_args):
    return load_data(args=tiny_args).splits


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    import train

    output = tmp_path_factory.mktemp("tiny_run")
    train.main([*TINY_RUN, "--output_dir", str(output)])
    return output


@pytest.fixture(scope="session")
def resume_reference(tmp_path_factory) -> tuple[dict, Path]:
    """``train.py`` with helpers.RESUME_ARGS, never interrupted, on one thread: what the run killed while saving
    (test_resume.py) and the run stopped by a full disk (test_disk_full.py) must end equal to; its metrics and
    folder (which the tests only read)."""
    import train

    output = tmp_path_factory.mktemp("resume_reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as those tests run: the same kernels in the same order, so reruns repeat exactly
    try:
        metrics = train.main([*RESUME_ARGS, "--output_dir", str(output)])
    finally:
        torch.set_num_threads(threads)
    return metrics, output


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of ``tiny_run`` (without its checkpoints: the run itself stays unexported) after
    ``python -m flowers_hf.export RUN --format onnx --quantize int8``: onnx/model.onnx, a static int8 model calibrated
    on the run's validation images, the comparison on its test split; the folder and the export's record."""
    from flowers_hf.export.__main__ import main as export

    run = tmp_path_factory.mktemp("tiny_export") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("stage*"))
    return run, export([str(run), "--format", "onnx", "--quantize", "int8"])


@pytest.fixture
def untrained_folder(tmp_path) -> Path:
    """A model folder as train.py saves one, without training: test_resnet, 4 flower classes, 32 px, random weights,
    no calibration, no train_config.yaml."""
    torch.manual_seed(0)
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), list(FLOWER_NAMES[:4]))
    save_model(model, tmp_path / "model", resolve_preprocessing(model.timm_model, TransformArguments(image_size=32)))
    return tmp_path / "model"


@pytest.fixture(scope="session")
def demo_server(tiny_run, tmp_path_factory):
    """``python demo/app.py --model <tiny run>`` in a subprocess, as a person starts it; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "app.log"
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--model", str(tiny_run), "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError(f"the demo did not start:\n{log.read_text()}")
    yield SimpleNamespace(url=url, port=port, log=log, process=server)
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def client(demo_server):
    """A gradio_client on the demo server."""
    return Client(demo_server.url, verbose=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A small photo-like JPEG to upload."""
    path = tmp_path_factory.mktemp("photos") / "flower.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)
