import json
import logging
import time

import datasets
import numpy as np
import pytest
from helpers import write_imagefolder
from PIL import Image

from flowers_hf.core.errors import HubUnavailableError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.standardize import standardize


def _class_of_pixel(data, split):
    """Imagefolder fixtures colour class index i (in folder order) as red = 40 * i."""
    return [round(np.asarray(image)[0, 0, 0] / 40) for image in data[split]["image"]]


def test_imagefolder_with_all_splits(tmp_path):
    classes = {"daisy": 3, "rose": 2, "tulip": 4}
    write_imagefolder(tmp_path, {"train": classes, "validation": classes, "test": classes})
    data = load_data(str(tmp_path)).splits
    assert data["train"].features["label"].names == ["daisy", "rose", "tulip"]
    assert {name: len(split) for name, split in data.items()} == {"train": 9, "validation": 9, "test": 9}
    for split in data:
        assert data[split]["label"] == _class_of_pixel(data, split)


def test_imagefolder_with_only_train_gets_seeded_stratified_splits(tmp_path, caplog):
    write_imagefolder(tmp_path, {"train": {"a": 20, "b": 20, "c": 20}})
    args = DataArguments(validation_fraction=0.2, test_fraction=0.1, split_seed=3)
    with caplog.at_level(logging.WARNING):
        data = load_data(str(tmp_path), args).splits
    assert "no test split" in caplog.text and "no validation split" in caplog.text
    assert {name: len(split) for name, split in data.items()} == {"train": 42, "validation": 12, "test": 6}
    for split, per_class in (("validation", 4), ("test", 2)):
        assert np.bincount(data[split]["label"]).tolist() == [per_class] * 3
    again = load_data(str(tmp_path), args).splits
    assert again["validation"]["label"] == data["validation"]["label"]
    assert [np.asarray(i).tobytes() for i in again["test"]["image"]] == [
        np.asarray(i).tobytes() for i in data["test"]["image"]
    ]


def test_imagefolder_with_oxford_ids_as_class_names(tmp_path):
    # Folders '1', '10', '2' of a Flowers-102 copy: imagefolder sorts them as strings; labels must follow the
    # Oxford order. A local folder is Flowers-102 when the user says so.
    write_imagefolder(tmp_path, {"train": {"1": 2, "10": 2, "2": 2}, "test": {"1": 1, "10": 1, "2": 1}})
    data = load_data(str(tmp_path), DataArguments(validation_fraction=0.5, class_names="flowers102")).splits
    names = [FLOWER_NAMES[0], FLOWER_NAMES[1], FLOWER_NAMES[9]]
    assert data["train"].features["label"].names == names
    folder_to_label = {0: 0, 1: 2, 2: 1}  # folder order '1', '10', '2' -> Oxford order 1, 2, 10
    for split in data:
        assert data[split]["label"] == [folder_to_label[c] for c in _class_of_pixel(data, split)]


def test_saved_dataset_dict_round_trips(tiny_synthetic, tmp_path):
    tiny_synthetic.save_to_disk(str(tmp_path / "saved"))
    data = load_data(str(tmp_path / "saved")).splits
    assert data["train"].features == tiny_synthetic["train"].features
    for split in data:
        assert data[split]["label"] == tiny_synthetic[split]["label"]
        assert np.array_equal(np.asarray(data[split][0]["image"]), np.asarray(tiny_synthetic[split][0]["image"]))


def _hub_like(names, labels, split_names=("train", "valid", "test")):
    image = Image.new("RGB", (8, 8))
    features = datasets.Features(
        {"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=names), "file": datasets.Value("string")}
    )
    rows = {"img": [image] * len(labels), "fine_label": labels, "file": ["x"] * len(labels)}
    return datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features) for s in split_names})


def test_hub_copy_with_other_column_and_split_names_is_standardised():
    data = standardize(_hub_like(["pink primrose", "sweet pea"], [0, 1, 1]))
    assert list(data) == ["train", "validation", "test"]
    assert list(data["train"].features) == ["image", "label"]
    assert data["validation"]["label"] == [0, 1, 1]


def test_hub_copy_with_string_ordered_ids_gets_flower_names_in_oxford_order():
    # As nelorth/oxford-flowers: class names '1', '10', '100', … in string order.
    names = sorted(str(i) for i in range(1, 103))
    labels = [names.index("10"), names.index("1"), names.index("102")]
    data = standardize(_hub_like(names, labels), flowers102=True)
    assert data["train"].features["label"].names == list(FLOWER_NAMES)
    assert data["train"]["label"] == [9, 0, 101]


def test_integer_labels_of_a_flowers102_source_become_flower_classes():
    image = Image.new("RGB", (8, 8))
    split = datasets.Dataset.from_dict(
        {"image": [image] * 3, "label": [0, 4, 101]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    data = standardize(datasets.DatasetDict({"train": split, "validation": split, "test": split}), flowers102=True)
    assert data["test"].features["label"].names == list(FLOWER_NAMES)
    assert data["test"]["label"] == [0, 4, 101]


def test_a_source_without_labels_is_refused_with_what_was_found():
    split = datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))]})
    with pytest.raises(ValueError, match="label column"):
        standardize(datasets.DatasetDict({"train": split}))


def test_a_misnamed_label_column_is_named_with_the_fix():
    split = datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))], "flower_id": [3]})
    with pytest.raises(ValueError, match=r"no a label column.*'flower_id'.*Rename the column") as raised:
        standardize(datasets.DatasetDict({"train": split}))
    assert "an image" not in str(raised.value).split(";")[0]


def _labelled(labels, feature) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": feature})
    return datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))] * len(labels), "label": labels}, features)


def test_labels_outside_the_classes_are_refused_before_training():
    names = datasets.ClassLabel(names=["pink primrose", "sweet pea"])
    data = {"train": _labelled([0, 1], names), "test": _labelled([1, -1, 0], names)}  # -1: an unlabelled row
    with pytest.raises(ValueError, match=r"split 'test': 1 label\(s\) outside the class ids 0 … 1.*row 1"):
        standardize(datasets.DatasetDict(data))
    with pytest.raises(ValueError, match="row 1 with label -3"):
        standardize(datasets.DatasetDict({"train": _labelled([0, -3], datasets.Value("int64"))}))


def test_integer_labels_give_every_split_the_same_classes_when_one_lacks_a_class():
    ids = datasets.Value("int64")
    data = {"train": _labelled([0, 101, 4], ids), "validation": _labelled([0, 4], ids), "test": _labelled([101], ids)}
    out = standardize(datasets.DatasetDict(data), flowers102=True)
    assert all(split.features["label"].names == list(FLOWER_NAMES) for split in out.values())
    assert out["validation"]["label"] == [0, 4]


def test_offline_hub_fails_fast_and_names_the_local_alternatives():
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as raised:
        load_data("dpdl-benchmark/oxford_flowers102")
    assert time.monotonic() - start < 30
    message = str(raised.value)
    for alternative in ("imagelabels.mat", "102flowers.tgz", "imagefolder", "save_to_disk", "synthetic"):
        assert alternative in message


def test_a_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_data(str(tmp_path / "nowhere" / "flowers"))


def test_summary_json_is_serialisable(tiny_synthetic):
    from flowers_hf.data import summarize

    summary = summarize(tiny_synthetic, "synthetic")
    assert json.loads(json.dumps(summary))["class_counts"]["test"] == [6, 6, 6, 6]


def test_the_loader_returns_the_identity_with_the_splits(tiny_args):
    loaded = load_data(args=tiny_args)
    assert loaded.identity.synthetic and loaded.identity.subject == "flower"
    assert loaded.identity.split_sizes == {name: len(split) for name, split in loaded.splits.items()}
