"""Any image-classification data set keeps its own class names and words; only Flowers-102 gets flower names."""

import json
import os
import subprocess
import sys

import datasets
import pytest
import yaml
from helpers import ROOT, write_imagefolder
from PIL import Image
from transformers import pipeline

import train
from flowers_hf.core.errors import DataError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.identity import identify, is_flowers102_source
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.standardize import standardize
from flowers_hf.serving.classifier import ImageClassifier

DIGITS = {"0": 8, "1": 8, "2": 8}
SHORT = [
    "--model", "test_resnet", "--pretrained", "false", "--image_size", "32", "--max_steps", "2",
    "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
]  # fmt: skip


def _split(labels, feature) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": feature})
    images = [Image.new("RGB", (8, 8), (10 * i, 0, 0)) for i in range(len(labels))]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_numeric_class_names_stay_numbers_unless_the_source_is_flowers102():
    digits = datasets.ClassLabel(names=[str(i) for i in range(10)])
    data = datasets.DatasetDict({s: _split(list(range(10)), digits) for s in ("train", "validation", "test")})
    assert standardize(data)["train"].features["label"].names == [str(i) for i in range(10)]
    assert standardize(data, flowers102=True)["train"].features["label"].names == list(FLOWER_NAMES[:10])


def test_integer_labels_starting_at_1_are_read_as_1_based_not_given_an_empty_class_0(caplog):
    ids = datasets.Value("int64")
    data = datasets.DatasetDict({"train": _split([1, 2, 3, 3], ids), "test": _split([2, 1], ids)})
    out = standardize(data, validation_fraction=0.25)
    assert out["train"].features["label"].names == ["1", "2", "3"]
    assert sorted([*out["train"]["label"], *out["validation"]["label"]]) == [0, 1, 2, 2]
    assert out["test"]["label"] == [1, 0]
    assert "1-based" in caplog.text


def test_cifar_style_columns_and_string_labels():
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["apple", "bee"]),
            "coarse_label": datasets.ClassLabel(names=["fruit", "insect"]),
        }
    )
    rows = {"img": [Image.new("RGB", (4, 4))] * 2, "fine_label": [0, 1], "coarse_label": [0, 1]}
    data = datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features) for s in ("train", "test")})
    out = standardize(data, validation_fraction=0.5)
    assert out["train"].features["label"].names == ["apple", "bee"]  # fine_label, as CIFAR-100 users mean
    assert standardize(data, 0.5, label_column="coarse_label")["test"].features["label"].names == ["fruit", "insect"]
    strings = datasets.DatasetDict(
        {s: _split(["healthy", "rust", "healthy"], datasets.Value("string")) for s in ("train", "test")}
    )
    assert standardize(strings, 0.3)["test"].features["label"].names == ["healthy", "rust"]
    with pytest.raises(DataError, match="--label_column"):
        standardize(datasets.DatasetDict({"train": data["train"].rename_column("fine_label", "a")}))


def test_flowers102_names_spelt_differently_become_canonical_and_others_are_refused():
    spelt = datasets.ClassLabel(names=["Pink Primrose", "hard leaved pocket orchid", "colts foot"])
    out = standardize(datasets.DatasetDict({"train": _split([0, 1, 2], spelt)}), 0.3, 0.3, flowers102=True)
    assert out["train"].features["label"].names == ["pink primrose", "hard-leaved pocket orchid", "colt's foot"]
    other = datasets.ClassLabel(names=["pink primrose", "tulip"])
    with pytest.raises(DataError, match="'tulip'"):
        standardize(datasets.DatasetDict({"train": _split([0, 1], other)}), flowers102=True)


def test_which_sources_are_flowers102(oxford_dir, tmp_path):
    assert is_flowers102_source("Donghyun99/Oxford-Flower-102") and is_flowers102_source(str(oxford_dir))
    assert not is_flowers102_source("beans") and not is_flowers102_source(str(tmp_path))
    assert is_flowers102_source(str(tmp_path), class_names="flowers102")
    assert identify("beans").subject is None and identify("beans").url == "https://huggingface.co/datasets/beans"
    assert identify(str(oxford_dir)).subject == "flower"
    official = {"train": 1020, "validation": 1020, "test": 6149}
    assert identify("Donghyun99/Oxford-Flower-102", split_sizes=official).official_split is True
    other = {"train": 7169, "validation": 0, "test": 1020}  # as nelorth/oxford-flowers: another protocol
    assert identify("nelorth/oxford-flowers", split_sizes=other).official_split is False
    assert identify("beans", split_sizes=other).official_split is None


def _snapshot(folder, names):
    """A folder as `hf download REPO --repo-type dataset --local-dir DIR` writes it: parquet shards and README."""
    feature = datasets.ClassLabel(names=names)
    for split, labels in (("train", [0, 1, 2, 0, 1, 2]), ("test", [2, 1, 0])):
        (folder / "data").mkdir(parents=True, exist_ok=True)
        _split(labels, feature).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    card = {
        "dataset_info": {"features": [{"name": "image", "dtype": "image"},
                                      {"name": "label", "dtype": {"class_label": {"names": dict(enumerate(names))}}}]},
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "test")]}],
    }  # fmt: skip
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n")
    return folder


def test_a_hub_snapshot_folder_of_parquet_shards_loads_with_its_names(tmp_path):
    folder = _snapshot(tmp_path / "beans", ["angular_leaf_spot", "bean_rust", "healthy"])
    data = load_data(str(folder), DataArguments(validation_fraction=0.34)).splits
    assert data["test"].features["label"].names == ["angular_leaf_spot", "bean_rust", "healthy"]
    assert data["test"]["label"] == [2, 1, 0]


def test_an_imagefolder_with_metadata_csv_loads_its_labels(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        rows = ["file_name,label"]
        for i, label in enumerate(["cat", "dog", "cat", "dog"]):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / split / f"{i}.png")
            rows.append(f"{i}.png,{label}")
        (tmp_path / split / "metadata.csv").write_text("\n".join(rows) + "\n")
    data = load_data(str(tmp_path), DataArguments(validation_fraction=0.5)).splits
    assert data["test"].features["label"].names == ["cat", "dog"]
    assert data["test"]["label"] == [0, 1, 0, 1]


@pytest.mark.slow
def test_a_digit_named_imagefolder_keeps_its_names_end_to_end(tmp_path):
    # No validation folder: train.py holds a share of train out for it.
    tree = write_imagefolder(tmp_path / "digits", {"train": DIGITS, "test": DIGITS})
    summary = subprocess.run(
        [sys.executable, "-m", "flowers_hf.data", str(tree)], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["class_names"] == ["0", "1", "2"]

    output = tmp_path / "run"
    metrics = train.main([*SHORT, "--dataset", str(tree), "--output_dir", str(output)])
    assert set(metrics) >= {"test_accuracy", "test_top5_accuracy", "test_macro_f1", "test_mean_per_class_accuracy"}
    config = json.loads((output / "config.json").read_text())
    assert config["label_names"] == ["0", "1", "2"]
    assert config["dataset"]["split_sizes"]["validation"] > 0 and config["dataset"]["split_sizes"]["test"] == 24
    assert config["dataset"]["name"] == "digits" and config["dataset"]["flowers102"] is False
    labels = {
        result["label"] for result in pipeline("image-classification", model=str(output))(Image.new("RGB", (32, 32)))
    }
    assert labels == {"0", "1", "2"}
    card = (output / "README.md").read_text()
    assert "| 0 | 0 |" in card and "| 2 | 2 |" in card  # the class table: id and name
    assert "flower" not in card.lower()
    classifier = ImageClassifier.from_pretrained(output)
    sys.path.insert(0, str(ROOT / "demo"))
    import app  # demo/app.py

    title, text = app.heading(classifier)
    assert title == "digits classifier" and "flower" not in text.lower()
    classifier.unsure_threshold = 0.9
    assert app.verdict(classifier, {"1": 0.5, "2": 0.3}).startswith("### Not one of the classes I know")


def test_a_flowers102_hub_copy_still_gets_flower_names():
    names = sorted(str(i) for i in range(1, 103))  # as nelorth/oxford-flowers: '1', '10', '100', …
    split = _split([names.index("10"), names.index("1")], datasets.ClassLabel(names=names))
    data = datasets.DatasetDict({"train": split, "validation": split, "test": split})
    out = standardize(data, flowers102=is_flowers102_source("nelorth/oxford-flowers"))
    assert out["train"].features["label"].names == list(FLOWER_NAMES)
    assert out["test"]["label"] == [9, 0]


@pytest.mark.slow
def test_a_hub_snapshot_folder_trains_with_its_own_names(tmp_path):
    folder = _snapshot(tmp_path / "beans", ["angular_leaf_spot", "bean_rust", "healthy"])
    output = tmp_path / "run"
    metrics = train.main(
        [*SHORT, "--dataset", str(folder), "--validation_fraction", "0.34", "--output_dir", str(output)]
    )
    # By hand: the saved model's top-1 answers on the snapshot's three test images against their labels.
    test = load_data(str(folder), DataArguments(validation_fraction=0.34)).splits["test"]
    classifier = ImageClassifier.from_pretrained(output)
    answers = [classifier.class_names.index(next(iter(classifier.predict(image, top_k=1)))) for image in test["image"]]
    right = sum(answer == label for answer, label in zip(answers, test["label"], strict=True))
    assert metrics["test_accuracy"] == pytest.approx(right / 3)
    assert json.loads((output / "test_results.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    config = json.loads((output / "config.json").read_text())
    assert config["label_names"] == ["angular_leaf_spot", "bean_rust", "healthy"]
    assert config["dataset"]["name"] == "beans" and config["dataset"]["subject"] is None
