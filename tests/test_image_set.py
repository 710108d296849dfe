"""Images only (flowers_hf.data.image_set): every layout of a folder, a list of files, a glob, several of them, a
data set without labels; what the error says for a folder without images; ``evaluate --ood FOLDER`` end to end."""

import json
import logging
import shutil

import datasets
import numpy as np
import pytest
from helpers import write_imagefolder
from PIL import Image

from flowers_hf.core.errors import BadImagesError, DataError, MissingFileError
from flowers_hf.data.image_set import image_files, is_data_set, load_image_set


def _photos(folder, names: list[str], size: int = 16) -> list:
    """Write a flat-coloured PNG (or JPEG, by suffix) at each name under ``folder``; return their colours."""
    colours = []
    for index, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = (10 * index, 255 - 10 * index, 7 * index)
        Image.new("RGB", (size, size), colour).save(path)
        colours.append(colour)
    return colours


def _colours(images: datasets.Dataset) -> list:
    return [tuple(int(c) for c in np.asarray(image.convert("RGB"))[0, 0]) for image in images["image"]]


def test_a_flat_folder_is_its_images_in_name_order(tiny_args, tmp_path):
    colours = _photos(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "notes.txt").write_text("not an image")  # other files are not images: not taken
    images = load_image_set(str(tmp_path), tiny_args)
    assert images.column_names == ["image"] and _colours(images) == colours


def test_a_single_class_train_folder_and_a_nested_tree_at_any_depth(tiny_args, tmp_path):
    # The case: train/other/ (one class, no validation or test) stopped with "no a label column".
    colours = _photos(tmp_path / "one", ["train/other/1.png", "train/other/2.png"])
    assert _colours(load_image_set(str(tmp_path / "one"), tiny_args)) == colours
    deep = _photos(tmp_path / "deep", ["2024/06/a.png", "2024/07/trip/b.png", "c.png"])
    _photos(tmp_path / "deep", [".thumbnails/x.png", "2024/.hidden.png"])  # hidden, as datasets' imagefolder skips
    assert sorted(_colours(load_image_set(str(tmp_path / "deep"), tiny_args))) == sorted(deep)


def test_an_imagefolder_tree_with_a_test_split_gives_its_test_images(tiny_args, tmp_path):
    folder = write_imagefolder(tmp_path / "tree", {"train": {"a": 2, "b": 2}, "test": {"a": 3, "b": 1}})
    files = image_files(str(folder))
    assert len(files) == 4 and all(file.parts[-3] == "test" for file in files)
    assert len(load_image_set(str(folder), tiny_args)) == 4


def test_a_list_of_files_relative_to_it_with_comments_and_a_folder(tiny_args, tmp_path):
    colours = _photos(tmp_path, ["x/1.png", "x/2.jpg", "more/3.png", "more/4.png"])
    listing = tmp_path / "unknown.txt"
    listing.write_text(f"# my unknown set\nx/1.png\n\n  {tmp_path / 'x' / '2.jpg'}  \nmore\nx/gone.png\n")
    files = image_files(str(listing))
    assert [file.name for file in files] == ["1.png", "2.jpg", "3.png", "4.png", "gone.png"]
    images = load_image_set(str(listing), tiny_args)  # the missing file is listed by the check and left out
    assert len(images) == 4 and _colours(images)[0] == colours[0] and _colours(images)[2:] == colours[2:]


def test_a_glob_and_comma_separated_sources(tiny_args, tmp_path):
    _photos(tmp_path, ["a/1.png", "a/b/2.png", "a/b/3.jpg", "c/4.png"])
    assert [f.name for f in image_files(str(tmp_path / "a" / "**" / "*.png"))] == ["1.png", "2.png"]
    assert [f.name for f in image_files(str(tmp_path / "a" / "*.png"))] == ["1.png"]
    several = f"{tmp_path / 'c'},{tmp_path / 'a' / 'b' / '3.jpg'}"
    assert [f.name for f in image_files(several)] == ["4.png", "3.jpg"]
    assert len(load_image_set(several, tiny_args)) == 2


def test_a_folder_without_images_says_what_it_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no image files in .*empty: found nothing"):
        image_files(str(tmp_path / "empty"))
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.csv", "sub/c.txt"):
        (tmp_path / "docs" / name).write_text("x")
    with pytest.raises(DataError, match=r"no image files in .*docs: found 3 files \(\.csv, \.txt\)"):
        image_files(str(tmp_path / "docs"))
    with pytest.raises(DataError, match=r"no image files match .*\*\.jpg: found nothing"):
        image_files(str(tmp_path / "docs" / "*.jpg"))
    with pytest.raises(DataError, match=r"no image files match .*: found 2 files \(\.txt\)"):
        image_files(str(tmp_path / "docs" / "**" / "*.txt"))
    (tmp_path / "list.txt").write_text("# nothing yet\n")
    with pytest.raises(DataError, match="it names no file"):
        image_files(str(tmp_path / "list.txt"))
    with pytest.raises(MissingFileError, match="is not a folder, an image file, a list of files"):
        image_files(str(tmp_path / "nowhere"))


def test_unreadable_images_are_listed_and_left_out_and_none_readable_stops(tiny_args, tmp_path, caplog):
    _photos(tmp_path, ["good.png"])
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg at all")
    with caplog.at_level(logging.WARNING):
        assert len(load_image_set(str(tmp_path), tiny_args)) == 1
    assert "2 cannot be decoded and are left out" in caplog.text
    assert "cut.png" in caplog.text and "fake.jpg: not an image" in caplog.text
    (tmp_path / "good.png").unlink()
    with pytest.raises(BadImagesError, match="none of the 2 images of the 'unknown' split can be decoded"):
        load_image_set(str(tmp_path), tiny_args)


def test_a_saved_data_set_without_labels_and_the_built_in_set_are_data_sets(tiny_args, tmp_path):
    # The labels (none here) and the class names do not matter; the test split is taken where there is one.
    colours = _photos(tmp_path / "raw", ["1.png", "2.png", "3.png"])
    split = datasets.Dataset.from_dict({"img": [str(tmp_path / "raw" / f"{i}.png") for i in (1, 2, 3)]})
    split = split.cast_column("img", datasets.Image())
    datasets.DatasetDict({"train": split.select([0]), "testing": split.select([1, 2])}).save_to_disk(tmp_path / "dd")
    assert is_data_set(str(tmp_path / "dd")) and is_data_set("synthetic_ood") and is_data_set("owner/name")
    assert not is_data_set(str(tmp_path / "raw")) and not is_data_set(str(tmp_path / "*.png"))
    images = load_image_set(str(tmp_path / "dd"), tiny_args)
    assert images.column_names == ["image"] and _colours(images) == colours[1:]
    split.save_to_disk(tmp_path / "one")  # a single saved Dataset, no splits: all of it
    assert _colours(load_image_set(str(tmp_path / "one"), tiny_args)) == colours


@pytest.mark.slow
def test_evaluate_ood_on_a_flat_folder_and_a_single_class_folder(tiny_run, tmp_path):
    from flowers_hf.evaluate import main

    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("stage*"))
    rng = np.random.default_rng(0)
    (tmp_path / "flat").mkdir()
    for index in range(7):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "flat" / f"{index}.png")
    _photos(tmp_path / "other", ["train/other/1.png", "train/other/2.png", "train/other/3.jpg"], size=40)
    for source, count in ((tmp_path / "flat", 7), (tmp_path / "other", 3)):
        main(
            [
                str(run),
                "--ood",
                str(source),
                "--output_dir",
                str(tmp_path / f"eval_{source.name}"),
                "--disable_tqdm",
                "true",
            ]
        )
        report = json.loads((tmp_path / f"eval_{source.name}" / "ood.json").read_text())
        assert report["num_ood"] == count and report["ood_source"] == str(source)
        assert set(report["scores"]) == {"msp", "max_logit", "energy"}
