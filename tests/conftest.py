"""Shared fixtures: tiny local data sets in every source layout, written fresh for the session."""

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

import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.io  # noqa: E402
from gradio_client import Client  # noqa: E402
from PIL import Image  # noqa: E402

from flowers_hf.config import DataArguments  # noqa: E402
from flowers_hf.data import load_flowers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# A miniature Oxford distribution: 30 images, 1-based ids and labels, splits interleaved so that an
# off-by-one in either the id or the label lookup gives wrong pairs.
OXFORD_NUM_IMAGES = 30
OXFORD_LABELS = np.array([(k * 37) % 102 + 1 for k in range(1, OXFORD_NUM_IMAGES + 1)])  # 1-based classes
OXFORD_SPLITS = {
    "trnid": np.array([3, 1, 4, 15, 9, 26, 5, 30]),
    "valid": np.array([2, 7, 18, 28, 8, 12]),
    "tstid": np.array([6, 10, 11, 13, 14, 16, 17, 19, 20, 21, 22, 23, 24, 25, 27, 29]),
}


def oxford_color(image_id: int) -> tuple[int, int, int]:
    """A flat colour that identifies an image id even after JPEG compression."""
    return (8 * image_id, 255 - 8 * image_id, 128)


def decode_oxford_id(image: Image.Image) -> int:
    red = np.asarray(image.convert("RGB"), dtype=np.float64)[..., 0].mean()
    return round(red / 8)


def _write_oxford_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": OXFORD_LABELS[None, :].astype(np.uint8)})
    scipy.io.savemat(root / "setid.mat", {key: ids[None, :].astype(np.uint16) for key, ids in OXFORD_SPLITS.items()})


def _write_oxford_jpgs(jpg_dir: Path) -> None:
    jpg_dir.mkdir(parents=True, exist_ok=True)
    for image_id in range(1, OXFORD_NUM_IMAGES + 1):
        Image.new("RGB", (24, 20), oxford_color(image_id)).save(jpg_dir / f"image_{image_id:05d}.jpg", quality=95)


@pytest.fixture(scope="session")
def oxford_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oxford")
    _write_oxford_files(root)
    _write_oxford_jpgs(root / "jpg")
    return root


@pytest.fixture(scope="session")
def oxford_tgz_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oxford_tgz")
    _write_oxford_files(root)
    staging = tmp_path_factory.mktemp("oxford_staging")
    _write_oxford_jpgs(staging / "jpg")
    with tarfile.open(root / "102flowers.tgz", "w:gz") as tar:
        tar.add(staging / "jpg", arcname="jpg")
    return root


def write_imagefolder(root: Path, splits: dict[str, dict[str, int]], size: int = 16) -> Path:
    """Write ``root/<split>/<class>/<n>.png``, each class a distinct flat colour."""
    for split, classes in splits.items():
        for class_index, (name, count) in enumerate(sorted(classes.items())):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                Image.new("RGB", (size, size), (40 * class_index, 10 * n, 200)).save(folder / f"{n}.png")
    return root


@pytest.fixture(scope="session")
def tiny_args() -> DataArguments:
    return DataArguments(
        dataset="synthetic", synthetic_num_classes=4, synthetic_images_per_class=8, synthetic_image_size=32
    )


@pytest.fixture(scope="session")
def tiny_synthetic(tiny_args):
    return load_flowers(args=tiny_args)


# A trained run folder for the demo and publishing tests: 6 synthetic classes, 32 px, test_resnet, 3 epochs.
TINY_RUN = [
    "--dataset", "synthetic", "--synthetic_num_classes", "6", "--synthetic_images_per_class", "40",
    "--synthetic_image_size", "32", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
    "--per_device_train_batch_size", "16", "--learning_rate", "0.01", "--num_train_epochs", "3",
    "--dataloader_num_workers", "0", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    import train

    output = tmp_path_factory.mktemp("tiny_run")
    train.main([*TINY_RUN, "--output_dir", str(output)])
    return output


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny IDAT: what a decompression bomb looks like before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def black_png(width: int, height: int) -> bytes:
    """A complete black 1-bit PNG, every row present: a few dozen KB on disk for any size."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row, packer = b"\0" * (1 + (width + 7) // 8), zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
