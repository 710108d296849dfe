"""Bad images found before training: listed by source file name, left out or refused; odd but valid ones kept."""

import io
import json
import logging
import shutil
import struct
import zlib

import datasets
import numpy as np
import pytest
import torch
from helpers import OXFORD_SPLITS, write_imagefolder
from PIL import Image

import train
from flowers_hf.core.cli import run_cli
from flowers_hf.core.errors import BadImagesError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, with_transforms
from flowers_hf.data.validate import drop_bad_images, find_bad_images, image_problem


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` × ``height`` pixels in a few dozen bytes: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def _photo(size=(24, 20)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# Oxford image id -> what is planted there. Ids 3 and 1… are train, 7 and 18 validation, 10 and 11 test.
UNDECODABLE = {
    3: ("train", lambda: encoded(_photo(), "JPEG")[:-120], "cannot be decoded: image file is truncated"),
    7: ("validation", lambda: b"", "empty file"),
    18: ("validation", lambda: b"<html>404 Not Found</html>", "not an image"),
    10: ("test", lambda: png_header(20_000, 20_000), "decompression bomb: 400,000,000 pixels"),  # PIL refuses it
    11: ("test", lambda: png_header(10_000, 10_000), "decompression bomb: 100,000,000 pixels"),  # PIL only warns
}
ODD_BUT_VALID = {  # all in train, so that the training transform decodes them
    1: lambda: encoded(Image.new("CMYK", (24, 20), (0, 200, 100, 30)), "JPEG"),
    4: lambda: encoded(Image.new("L", (24, 20), 90), "JPEG"),
    15: lambda: encoded(Image.new("RGBA", (24, 20), (200, 10, 10, 128)), "PNG"),
    9: lambda: encoded(Image.new("P", (24, 20), 5), "PNG"),
    26: lambda: encoded(Image.fromarray(np.full((20, 24), 50_000, dtype=np.uint16)), "PNG"),
    5: lambda: encoded(Image.new("RGB", (1, 1), (250, 0, 0)), "JPEG"),
}


@pytest.fixture(scope="module")
def planted(oxford_dir, tmp_path_factory):
    """The conftest Oxford folder with undecodable and odd-but-valid files planted under their Oxford names."""
    root = tmp_path_factory.mktemp("planted")
    shutil.copytree(oxford_dir, root, dirs_exist_ok=True)
    for image_id, make in [*((i, case[1]) for i, case in UNDECODABLE.items()), *ODD_BUT_VALID.items()]:
        (root / "jpg" / f"image_{image_id:05d}.jpg").write_bytes(make())
    return root


def test_oxford_folder_lists_exactly_the_undecodable_files(planted, tmp_path):
    data = load_data(str(planted)).splits
    clean = drop_bad_images(data, output_dir=tmp_path)
    listed = json.loads((tmp_path / "bad_images.json").read_text())
    assert sorted((b["file"], b["split"]) for b in listed) == sorted(
        (f"image_{i:05d}.jpg", split) for i, (split, _, _) in UNDECODABLE.items()
    )
    for entry in listed:
        image_id = int(entry["file"][6:11])
        assert entry["reason"].startswith(UNDECODABLE[image_id][2])
    removed = {"train": 1, "validation": 2, "test": 2}
    for split, key in (("train", "trnid"), ("validation", "valid"), ("test", "tstid")):
        assert len(clean[split]) == len(OXFORD_SPLITS[key]) - removed[split]


def test_odd_but_valid_images_are_kept_and_go_through_both_transforms(planted):
    clean = drop_bad_images(load_data(str(planted)).splits)
    assert len(clean["train"]) == len(OXFORD_SPLITS["trnid"]) - 1  # only the truncated one left out
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    for name, split in with_transforms(clean, build_train_transform(prep, seed=0), build_eval_transform(prep)).items():
        for example in split:  # the train split holds CMYK, L, RGBA, P, 16-bit and a 1×1 pixel image
            assert example["pixel_values"].shape == (3, 32, 32), name
            assert torch.isfinite(example["pixel_values"]).all()


def test_on_bad_image_error_stops_with_the_list_and_writes_it(planted, tmp_path):
    with pytest.raises(BadImagesError) as raised:
        drop_bad_images(load_data(str(planted)).splits, "error", output_dir=tmp_path)
    message = str(raised.value)
    assert "5 of 30 images cannot be decoded" in message
    assert all(f"image_{i:05d}.jpg" in message for i in UNDECODABLE)
    assert len(json.loads((tmp_path / "bad_images.json").read_text())) == 5


def test_the_log_counts_them_and_a_clean_set_is_left_as_it_is(planted, oxford_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        drop_bad_images(load_data(str(planted)).splits)
    assert "5 cannot be decoded and are left out" in caplog.text
    data = load_data(str(oxford_dir)).splits
    assert drop_bad_images(data, output_dir=tmp_path) is data
    assert json.loads((tmp_path / "bad_images.json").read_text()) == []


def test_imagefolder_names_files_by_their_path_in_the_tree(tmp_path):
    tree = write_imagefolder(tmp_path / "tree", {"train": {"rose": 4, "tulip": 4}, "test": {"rose": 2, "tulip": 2}})
    (tree / "train" / "rose" / "broken.png").write_bytes(encoded(_photo(), "PNG")[:60])
    (tree / "test" / "tulip" / "notes.jpg").write_text("not a photo")
    bad = find_bad_images(load_data(str(tree)).splits)
    assert sorted(b["file"] for b in bad) == ["test/tulip/notes.jpg", "train/rose/broken.png"]


def test_images_stored_as_bytes_are_checked_too():
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {
        "image": [
            {"bytes": encoded(_photo(), "PNG"), "path": "ok.png"},
            {"bytes": encoded(_photo(), "PNG")[:100], "path": None},
        ]
    }
    split = datasets.Dataset.from_dict({**rows, "label": [0, 1]}, features=features)
    bad = find_bad_images(datasets.DatasetDict({"train": split}))
    assert bad == [{"file": None, "split": "train", "index": 1, "reason": bad[0]["reason"]}]
    assert bad[0]["reason"].startswith("cannot be decoded")


def test_a_bad_image_after_a_thousand_good_ones_is_found():
    # datasets writes results in batches of 1,000 rows and would type an all-None first batch as null.
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a"])})
    good = {"bytes": encoded(_photo((4, 4)), "PNG"), "path": None}
    images = [good] * 1_200 + [{"bytes": b"", "path": None}]
    split = datasets.Dataset.from_dict({"image": images, "label": [0] * len(images)}, features=features)
    assert [b["index"] for b in find_bad_images(datasets.DatasetDict({"train": split}))] == [1_200]


def test_a_missing_file_and_a_corrupt_png_are_problems(tmp_path):
    assert image_problem({"bytes": None, "path": str(tmp_path / "gone.jpg")}) == "missing file"
    png = bytearray(encoded(_photo((64, 64)), "PNG"))
    png[-40:-20] = b"\0" * 20  # inside the compressed data
    assert image_problem({"bytes": bytes(png), "path": None}) is not None


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: faster than waiting for a second thread on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_training_run_on_a_folder_with_bad_files_finishes_and_lists_them(planted, tmp_path, one_thread):
    argv = [
        "--dataset", str(planted), "--output_dir", str(tmp_path), "--model", "test_resnet", "--pretrained", "false",
        "--image_size", "32", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip
    metrics = train.main(argv)
    assert set(metrics) >= {"test_accuracy", "test_top5_accuracy", "test_macro_f1", "test_mean_per_class_accuracy"}
    assert len(json.loads((tmp_path / "config.json").read_text())["label_names"]) == 102  # Oxford's classes
    listed = json.loads((tmp_path / "bad_images.json").read_text())
    assert sorted(b["file"] for b in listed) == sorted(f"image_{i:05d}.jpg" for i in UNDECODABLE)


def test_on_bad_image_error_ends_the_command_before_training_with_status_1(planted, tmp_path, caplog):
    argv = ["--dataset", str(planted), "--output_dir", str(tmp_path), "--on_bad_image", "error", "--report_to", "none"]
    with caplog.at_level(logging.ERROR):
        assert run_cli(train.main, argv) == 1
    assert "BadImagesError: 5 of 30 images cannot be decoded" in caplog.text and "image_00018.jpg" in caplog.text
    assert not (tmp_path / "stage1").exists()
