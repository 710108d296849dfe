"""What phones send: HEIC/HEIF (iPhone photos) and AVIF files open in the demo and in training data, made here."""

import io
import shutil

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from helpers import save_phone_photo
from PIL import Image

from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.images import PHONE_EXTENSIONS, open_image
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import (
    build_eval_transform,
    build_train_transform,
    collate_fn,
    denormalize,
    with_transforms,
)
from flowers_hf.data.validate import find_bad_images

RED, BLUE = (220, 30, 40), (30, 40, 210)
SUFFIXES = [".heic", ".avif"]
# Lossy (quality 95), 4:2:0 chroma: flat colours come back within a few levels, edges blur by a pixel or two.
TOLERANCE = 8


def _halves(width: int = 40, height: int = 30) -> Image.Image:
    """Red on the left, blue on the right: tells the size, the orientation and the colours apart."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, : width // 2], pixels[:, width // 2 :] = RED, BLUE
    return Image.fromarray(pixels)


def _close(pixel, colour) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, dtype=int) - colour) <= TOLERANCE))


def test_heic_heif_and_avif_are_known_image_extensions():
    assert {".heic", ".heif", ".avif"} <= set(PHONE_EXTENSIONS)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_open_image_reads_the_size_and_colours(tmp_path, suffix):
    image = open_image(save_phone_photo(_halves(), tmp_path / f"photo{suffix}"))
    assert (image.mode, image.size) == ("RGB", (40, 30))
    assert _close(image.getpixel((5, 15)), RED) and _close(image.getpixel((34, 15)), BLUE)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_phone_held_upright_is_turned_as_its_exif_says(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view", as a phone held upright writes it
    path = save_phone_photo(_halves(), tmp_path / f"upright{suffix}", exif=exif.tobytes())
    image = open_image(path)
    assert image.size == (30, 40)  # turned once, neither left as stored nor turned twice
    assert _close(image.getpixel((15, 5)), RED) and _close(image.getpixel((15, 34)), BLUE)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_file_objects_and_large_photos_work_too(tmp_path, suffix):
    path = save_phone_photo(_halves(800, 600), tmp_path / f"big{suffix}")
    image = open_image(io.BytesIO(path.read_bytes()), max_side=200)
    assert image.size == (200, 150)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_truncated_file_gets_the_message(tmp_path, suffix):
    data = save_phone_photo(_halves(), tmp_path / f"whole{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="not an image that can be read"):
        open_image(tmp_path / f"cut{suffix}")


COLOURS = {"iris": BLUE, "rose": RED}


@pytest.fixture(scope="module")
def phone_tree(tmp_path_factory):
    """An imagefolder tree of flat-coloured phone photos: each split, each class, one HEIC and one AVIF."""
    root = tmp_path_factory.mktemp("phone_tree")
    for split in ("train", "validation", "test"):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for suffix in (".heic", ".AVIF"):  # upper case too, as cameras name files
                save_phone_photo(Image.new("RGB", (48, 36), colour), folder / f"IMG_0001{suffix}")
    return root


def test_an_imagefolder_of_heic_and_avif_loads_every_file_with_its_label(phone_tree):
    data = load_data(str(phone_tree)).splits
    assert {name: len(split) for name, split in data.items()} == {"train": 4, "validation": 4, "test": 4}
    names = data["train"].features["label"].names
    assert sorted(names) == ["iris", "rose"]
    for row in data["test"]:
        assert row["image"].format in ("HEIF", "AVIF") and row["image"].size == (48, 36)
        assert _close(np.asarray(row["image"].convert("RGB")).mean(axis=(0, 1)), COLOURS[names[row["label"]]])


def test_the_bad_image_check_keeps_them_and_finds_a_truncated_one(phone_tree, tmp_path):
    assert find_bad_images(load_data(str(phone_tree)).splits) == []
    broken = shutil.copytree(phone_tree, tmp_path / "broken")
    target = broken / "test" / "rose" / "IMG_0001.heic"
    target.write_bytes(target.read_bytes()[:200])
    bad = find_bad_images(load_data(str(broken)).splits)
    assert [(b["file"], b["split"]) for b in bad] == [("test/rose/IMG_0001.heic", "test")]


def test_the_training_and_eval_transforms_see_the_right_pixels(phone_tree):
    data = load_data(str(phone_tree)).splits
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    plain = TransformArguments(color_jitter=0.0, hue_jitter=0.0)  # crops, flips and turns keep a flat colour
    names = data["train"].features["label"].names
    for transform in (build_train_transform(prep, plain, seed=0), build_eval_transform(prep)):
        for row in data["train"]:
            pixels = denormalize(transform(row["image"]), prep.mean, prep.std)
            assert pixels.shape == (32, 32, 3)
            assert _close(255 * pixels.mean(axis=(0, 1)), COLOURS[names[row["label"]]])


@pytest.mark.slow
def test_a_spawned_dataloader_worker_decodes_them(phone_tree):
    # A spawned worker starts a fresh interpreter: it reads HEIC only because unpickling the transform imports
    # flowers_hf.data.images, which registers the opener. Forked workers inherit it from the parent.
    data = load_data(str(phone_tree)).splits
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    ready = with_transforms(data, build_eval_transform(prep), build_eval_transform(prep))
    loader = torch.utils.data.DataLoader(
        ready["train"], batch_size=4, num_workers=1, multiprocessing_context="spawn", collate_fn=collate_fn
    )
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert sorted(batch["labels"].tolist()) == [0, 0, 1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_the_demo_classifies_an_uploaded_phone_photo(client, tiny_run, tmp_path, suffix):
    from flowers_hf.serving.classifier import ImageClassifier

    path = save_phone_photo(_halves(120, 90), tmp_path / f"IMG_4242{suffix}")
    result = client.predict(handle_file(str(path)), api_name="/predict")
    top5 = {entry["label"]: entry["confidence"] for entry in result["confidences"]}
    assert top5 == pytest.approx(ImageClassifier.from_pretrained(tiny_run).predict(path), abs=1e-4)
