import datasets
import numpy as np
import pytest
import scipy.io
from helpers import OXFORD_LABELS, OXFORD_SPLITS, decode_oxford_id

from flowers_hf.core.errors import DataError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.labels import FLOWER_NAMES

SPLIT_KEYS = {"train": "trnid", "validation": "valid", "test": "tstid"}


def _assert_official_pairs(data):
    assert data["train"].features["label"].names == list(FLOWER_NAMES)
    for split, key in SPLIT_KEYS.items():
        ids = [decode_oxford_id(image) for image in data[split]["image"]]
        assert sorted(ids) == sorted(OXFORD_SPLITS[key].tolist())
        # Label of image id k is labels[k - 1] - 1: 1-based ids and 1-based classes both shifted once.
        assert data[split]["label"] == [int(OXFORD_LABELS[i - 1]) - 1 for i in ids]


def test_jpg_folder_gives_the_official_split_with_zero_based_labels(oxford_dir):
    data = load_data(str(oxford_dir)).splits
    _assert_official_pairs(data)
    # Images stay files on disk, named as in the source, and are decoded on access.
    raw = data["train"].cast_column("image", datasets.Image(decode=False))
    assert raw[0]["image"] == {"bytes": None, "path": str(oxford_dir / "jpg" / "image_00003.jpg")}


def test_archive_is_extracted_once_into_the_cache(oxford_tgz_dir, tmp_path):
    args = DataArguments(cache_dir=str(tmp_path))
    data = load_data(str(oxford_tgz_dir), args).splits
    _assert_official_pairs(data)
    extracted = list((tmp_path / "flowers_hf").iterdir())
    assert len(extracted) == 1 and not extracted[0].name.endswith("partial")
    marker = extracted[0] / "jpg" / "image_00001.jpg"
    mtime = marker.stat().st_mtime_ns
    load_data(str(oxford_tgz_dir), args)
    assert marker.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "flowers_hf").iterdir())) == 1


def test_a_missing_image_is_named(oxford_dir, tmp_path):
    broken = tmp_path / "broken"
    (broken / "jpg").mkdir(parents=True)
    for name in ("imagelabels.mat", "setid.mat"):
        (broken / name).write_bytes((oxford_dir / name).read_bytes())
    for image in (oxford_dir / "jpg").iterdir():
        if image.name != "image_00007.jpg":
            (broken / "jpg" / image.name).write_bytes(image.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"image_00007\.jpg"):
        load_data(str(broken))


def test_labels_outside_the_oxford_range_are_refused(oxford_dir, tmp_path):
    bad = tmp_path / "bad"
    (bad).mkdir()
    (bad / "jpg").symlink_to(oxford_dir / "jpg")
    (bad / "setid.mat").write_bytes((oxford_dir / "setid.mat").read_bytes())
    scipy.io.savemat(bad / "imagelabels.mat", {"labels": np.zeros((1, 30), dtype=np.uint8)})  # 0 is not a class
    with pytest.raises(ValueError, match="1-based"):
        load_data(str(bad))


def test_a_wrong_mat_file_says_which_key_is_missing(oxford_dir, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "jpg").symlink_to(oxford_dir / "jpg")
    (wrong / "imagelabels.mat").write_bytes((oxford_dir / "imagelabels.mat").read_bytes())
    scipy.io.savemat(wrong / "setid.mat", {"train_ids": np.arange(1, 5)[None, :]})
    with pytest.raises(DataError, match="trnid"):  # a UserError: the commands end with this one line
        load_data(str(wrong))
