"""Plain helpers and constants shared by the tests: ``from helpers import …`` (fixtures stay in conftest.py).

Only the standard library, numpy, scipy and Pillow are imported here (matplotlib inside :func:`on_white`), never
huggingface_hub, datasets or flowers_hf: conftest.py sets HF_HOME and the offline variables before those are
imported, and this module must not be the one that imports them first, whoever imports it.
"""

import json
import socket
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

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


def write_oxford_files(root: Path) -> None:
    """``imagelabels.mat`` and ``setid.mat`` of the miniature Oxford distribution, in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": OXFORD_LABELS[None, :].astype(np.uint8)})
    scipy.io.savemat(root / "setid.mat", {key: ids[None, :].astype(np.uint16) for key, ids in OXFORD_SPLITS.items()})


def write_oxford_jpgs(jpg_dir: Path) -> None:
    """``image_00001.jpg`` … of the miniature Oxford distribution, each in its :func:`oxford_color`."""
    jpg_dir.mkdir(parents=True, exist_ok=True)
    for image_id in range(1, OXFORD_NUM_IMAGES + 1):
        Image.new("RGB", (24, 20), oxford_color(image_id)).save(jpg_dir / f"image_{image_id:05d}.jpg", quality=95)


def write_imagefolder(root: Path, splits: dict[str, dict[str, int]], size: int = 16) -> Path:
    """Write ``root/<split>/<class>/<n>.png``, each class a distinct flat colour."""
    for split, classes in splits.items():
        for class_index, (name, count) in enumerate(sorted(classes.items())):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                Image.new("RGB", (size, size), (40 * class_index, 10 * n, 200)).save(folder / f"{n}.png")
    return root


def save_phone_photo(image: Image.Image, path: Path, **params) -> Path:
    """Save ``image`` as a phone sends it, in the format ``path``'s suffix names: HEIC/HEIF or AVIF."""
    if path.suffix.lower() in (".heic", ".heif"):
        import pillow_heif  # a test-only encoder: the package reads HEIC with pi-heif, which has none

        pillow_heif.from_pillow(image).save(path, **{"quality": 95, **params})
    else:
        image.save(path, format="AVIF", **{"quality": 95, **params})
    return path


# A trained run folder for the demo and publishing tests: 6 synthetic classes, 32 px, test_resnet, 3 epochs.
TINY_RUN = [
    "--dataset", "synthetic", "--synthetic_num_classes", "6", "--synthetic_images_per_class", "40",
    "--synthetic_image_size", "32", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
    "--per_device_train_batch_size", "16", "--learning_rate", "0.01", "--num_train_epochs", "3",
    "--dataloader_num_workers", "0", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip


RESUME_SECRET = "hf_resumeTestNotARealToken0123456789"
# The resume and full-disk runs (test_resume.py, test_disk_full.py; their uninterrupted reference is conftest's
# resume_reference): 4 classes × 40 images of 32 px (20 / 20 / 120 per split), batch 8: 3 steps an epoch, 4
# epochs, a checkpoint an epoch. One DataLoader worker, not persistent (the default): a fresh worker each epoch
# reseeds the augmentation from torch's RNG, which checkpoints restore (persistent workers would carry their stream
# over from epoch 1; without workers Albumentations keeps its own).
RESUME_ARGS = [
    "--dataset", "synthetic", "--synthetic_num_classes", "4", "--synthetic_images_per_class", "40",
    "--synthetic_image_size", "32", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32", "--learning_rate", "0.01",
    "--num_train_epochs", "4", "--dataloader_num_workers", "1",
    "--report_to", "none", "--disable_tqdm", "true", "--seed", "0", "--hub_token", RESUME_SECRET,
]  # fmt: skip
# The test scores a resumed run must give exactly as the uninterrupted one.
RESUME_COMPARED = ("test_loss", "test_accuracy", "test_top5_accuracy", "test_macro_f1", "test_mean_per_class_accuracy")


def stage1_evaluations(output: Path) -> list[tuple[float, float, float]]:
    """``(epoch, eval_loss, eval_accuracy)`` of each evaluation of a run's stage 1."""
    history = json.loads((output / "stage1" / "trainer_state.json").read_text())["log_history"]
    return [(r["epoch"], r["eval_loss"], r["eval_accuracy"]) for r in history if "eval_loss" in r]


def png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels of a figure, after checking that the file is a whole PNG."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is a {image.format}, not a PNG"
        image.load()  # every row decoded: a file cut short fails here
        return np.asarray(image.convert("RGB"))


def pixels_near(pixels: np.ndarray, colour: tuple[float, float, float], tolerance: float = 4) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` in every channel."""
    return int((np.abs(pixels.astype(np.float64) - colour).max(axis=-1) <= tolerance).sum())


def on_white(colour: str, alpha: float) -> tuple[float, float, float]:
    """A matplotlib colour (e.g. ``"tab:blue"``) drawn with ``alpha`` on a white figure, in 0–255 RGB."""
    from matplotlib.colors import to_rgb

    return tuple(255 * (alpha * c + 1 - alpha) for c in to_rgb(colour))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dry_gpu_check(out: Path, **env: str) -> dict:
    """``GPU_CHECK_DRY=1 bash bench/gpu_check.sh`` with this interpreter and ``env`` added, its files in ``out``;
    it must succeed. Its summary, ``gpu_check.json``."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "OUT": str(out), **env}
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    logs = "".join(path.read_text()[-2000:] for path in sorted(out.glob("*.log")))
    assert done.returncode == 0, done.stderr[-4000:] + logs
    return json.loads((out / "gpu_check.json").read_text())
