"""--max_eval_samples: one subset rule for evaluate and export, seeded and stratified by class where it can be."""

import datasets
import numpy as np

from flowers_hf.data.subset import sample_split


def _class_sorted(per_class: int, classes: int) -> datasets.Dataset:
    labels = np.repeat(np.arange(classes), per_class)
    features = datasets.Features({"index": datasets.Value("int64"), "label": datasets.ClassLabel(num_classes=classes)})
    return datasets.Dataset.from_dict({"index": np.arange(len(labels)), "label": labels}, features=features)


def test_a_subset_of_a_class_sorted_split_holds_every_class_in_proportion():
    split = _class_sorted(per_class=10, classes=5)
    subset = sample_split(split, 20, seed=0)
    assert np.bincount(subset["label"], minlength=5).tolist() == [4, 4, 4, 4, 4]  # the first N would be 2 classes
    assert subset["index"] == sorted(subset["index"])  # in the split's order
    assert sample_split(split, 20, seed=0)["index"] == subset["index"]  # seeded
    assert sample_split(split, 20, seed=1)["index"] != subset["index"]


def test_a_sample_too_small_for_every_class_is_a_seeded_uniform_one():
    split = _class_sorted(per_class=10, classes=5)
    subset = sample_split(split, 3, seed=0)
    assert len(subset) == 3 and len(set(subset["index"])) == 3
    expected = np.sort(np.random.default_rng(0).choice(50, 3, replace=False)).tolist()
    assert subset["index"] == expected


def test_no_count_or_a_count_past_the_end_keeps_the_whole_split():
    split = _class_sorted(per_class=3, classes=2)
    assert sample_split(split, None) is split
    assert sample_split(split, 6) is split
