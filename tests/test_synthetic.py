import io

import numpy as np
import pytest
from PIL import Image

from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.synthetic import generate_examples, make_classes, split_counts


def _examples(split="train", classes=(0, 1), **overrides):
    kwargs = dict(num_classes=5, images_per_class=8, image_size=32, image_format="jpeg", seed=0)
    kwargs.update(overrides)
    return list(generate_examples(split, list(classes), **kwargs))


def test_same_seed_gives_identical_images_and_another_seed_other_ones():
    first, again, other = _examples(), _examples(), _examples(seed=1)
    assert [e["image"]["bytes"] for e in first] == [e["image"]["bytes"] for e in again]
    assert all(a["image"]["bytes"] != b["image"]["bytes"] for a, b in zip(first, other, strict=True))


def test_more_images_per_class_keep_the_earlier_ones():
    few = _examples(images_per_class=8)
    many = _examples(images_per_class=16)
    # Train takes the first images of each class: 1 of 8, 2 of 16. Image 0 of each class is shared.
    assert few[0]["image"]["bytes"] == many[0]["image"]["bytes"]


def test_split_counts_follow_the_official_proportions():
    assert split_counts(80) == {"train": 10, "validation": 10, "test": 60}
    assert split_counts(3) == {"train": 1, "validation": 1, "test": 1}
    with pytest.raises(ValueError, match="no test image"):
        split_counts(2)


def test_classes_differ_in_at_least_two_attributes():
    classes = make_classes(102, seed=0)
    attributes = [(c.petals, c.shape, c.hue, c.centre, c.rings) for c in classes]
    assert len(set(attributes)) == 102
    for i, a in enumerate(attributes):
        for b in attributes[i + 1 :]:
            assert sum(x != y for x, y in zip(a, b, strict=True)) >= 2


def test_impossible_class_count_fails_before_drawing():
    with pytest.raises(ValueError, match="at most"):
        make_classes(5000, seed=0)


@pytest.mark.parametrize(("image_format", "pil_format"), [("jpeg", "JPEG"), ("png", "PNG")])
def test_images_are_encoded_as_asked_with_the_requested_shorter_side(image_format, pil_format):
    for example in _examples(image_format=image_format, image_size=48):
        image = Image.open(io.BytesIO(example["image"]["bytes"]))
        assert image.format == pil_format
        assert image.mode == "RGB"
        assert min(image.size) == 48
        assert max(image.size) <= 72
        assert example["image"]["path"].endswith(".jpg" if image_format == "jpeg" else ".png")


def test_load_synthetic_gives_requested_counts_and_flower_names(tiny_synthetic):
    assert {name: len(split) for name, split in tiny_synthetic.items()} == {"train": 4, "validation": 4, "test": 24}
    assert tiny_synthetic["train"].features["label"].names == list(FLOWER_NAMES[:4])
    for split in tiny_synthetic.values():
        assert sorted(split["label"]) == sorted(list(range(4)) * (len(split) // 4))
    assert min(tiny_synthetic["test"][0]["image"].size) == 32


def test_classes_are_learnable_from_simple_colour_features():
    # Nearest centroid on a coarse colour histogram of the image centre, where the flower is, beats
    # chance (10 %) by far. Petal count and shape, which a CNN also sees, are not even used here.
    args = DataArguments(
        dataset="synthetic", synthetic_num_classes=10, synthetic_images_per_class=24, synthetic_image_size=48
    )
    data = load_data(args=args).splits

    def features(split):
        rows = []
        for image in split["image"]:
            pixels = np.asarray(image)
            h, w = pixels.shape[:2]
            centre = pixels[int(h * 0.35) : int(h * 0.65), int(w * 0.35) : int(w * 0.65)].reshape(-1, 3) // 64
            codes = centre[:, 0] * 16 + centre[:, 1] * 4 + centre[:, 2]
            rows.append(np.bincount(codes, minlength=64) / len(codes))
        return np.array(rows), np.array(split["label"])

    train_x, train_y = features(data["train"])
    test_x, test_y = features(data["test"])
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(10)])
    predicted = np.argmin(((test_x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test_y).mean() > 0.35
