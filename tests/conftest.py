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

import tarfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.io  # noqa: E402
from PIL import Image  # noqa: E402

from flowers_hf.config import DataArguments  # noqa: E402
from flowers_hf.data import load_flowers  # noqa: E402

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


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)
