"""The corruption suite: every corruption changes the image and keeps its shape; severity orders the damage;
the draws are seeded per image; the summary and the plot."""

import itertools
import json

import cv2
import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.cache import cache_images
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, eval_steps
from flowers_hf.evaluation.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    CorruptionTransform,
    build_corruption,
    corrupt,
    robustness_summary,
)
from flowers_hf.reporting.plots import plot_robustness


def _smooth_image(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth random colour field: geometric shifts change it in proportion to their size."""
    cells = np.random.default_rng(seed).uniform(30, 225, (4, 5, 3)).astype(np.float32)
    return cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


IMAGES = [_smooth_image(seed) for seed in range(4)]


def _change(name: str, severity: int) -> float:
    """Mean absolute pixel change over the test images, each with its own seed."""
    changes = [np.abs(corrupt(im, name, severity, seed=i).astype(float) - im).mean() for i, im in enumerate(IMAGES)]
    return float(np.mean(changes))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_image_and_keeps_its_shape(name):
    # Fine texture on the smooth field, so that a mild blur shows too.
    texture = np.random.default_rng(9).integers(-25, 26, IMAGES[0].shape)
    image = (IMAGES[0] + texture).clip(0, 255).astype(np.uint8)
    for severity in SEVERITIES:
        corrupted = corrupt(image, name, severity, seed=1)
        assert corrupted.shape == image.shape and corrupted.dtype == np.uint8
        assert np.abs(corrupted.astype(float) - image).mean() > 0.5, (name, severity)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_higher_severity_changes_more_on_average(name):
    changes = [_change(name, severity) for severity in SEVERITIES]
    assert changes[-1] > 1.5 * changes[0], changes
    # Geometric shifts of a smooth image saturate at the top; allow that much.
    assert all(later >= 0.95 * earlier for earlier, later in itertools.pairwise(changes)), changes


def test_draws_are_seeded_per_image():
    image = IMAGES[0]
    for name in ("gaussian_noise", "rotation", "off_centre_crop", "cluttered_background"):
        assert np.array_equal(corrupt(image, name, 3, seed=5), corrupt(image, name, 3, seed=5))
    noise = [corrupt(image, "gaussian_noise", 3, seed=seed) for seed in (1, 2)]
    assert not np.array_equal(*noise)


def test_the_transform_corrupts_at_the_eval_resolution_the_same_way_every_time():
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    photo = Image.fromarray(_smooth_image(0, 90, 150))
    transform = CorruptionTransform(prep, "cluttered_background", 4, seed=0)
    corrupted = transform(photo, index=7)
    assert corrupted.size == eval_steps(prep).resize(photo).size  # the eval transform's resize, before its crop
    assert np.array_equal(np.asarray(corrupted), np.asarray(transform(photo, index=7)))
    assert not np.array_equal(np.asarray(corrupted), np.asarray(transform(photo, index=8)))
    assert build_eval_transform(prep)(corrupted).shape == (3, 32, 32)


def test_spatial_magnitudes_scale_with_the_input_size():
    small, large = (build_corruption("gaussian_blur", 5, scale)[0] for scale in (64 / 224, 1.0))
    assert small.sigma_limit[0] == pytest.approx(6 * 64 / 224) and large.sigma_limit[0] == 6
    kernels = [build_corruption("motion_blur", s, 64 / 224)[0].blur_limit[0] for s in SEVERITIES]
    assert kernels == sorted(set(kernels)) and all(k % 2 == 1 for k in kernels)  # distinct, odd


def test_unknown_corruption_or_severity_is_refused():
    with pytest.raises(ValueError, match="unknown corruption"):
        build_corruption("fog", 1)
    with pytest.raises(ValueError, match="severity"):
        build_corruption("zoom", 6)


def test_summary_and_plot(tmp_path):
    accuracy = {"zoom": {1: 0.5, 2: 0.3}, "rotation": {1: 0.6, 2: 0.2}}
    summary = robustness_summary(0.8, accuracy, ece={"zoom": {1: 0.1, 2: 0.2}})
    assert summary["mean_corruption_accuracy"] == pytest.approx(0.4)
    assert summary["relative_mean_corruption_accuracy"] == pytest.approx(0.5)
    zoom = summary["corruptions"]["zoom"]
    assert zoom["mean_accuracy"] == pytest.approx(0.4) and zoom["relative_accuracy"]["2"] == pytest.approx(0.375)
    assert zoom["ece"] == {"1": 0.1, "2": 0.2} and zoom["levels"] == {"1": 0.9, "2": 0.8}
    json.dumps(summary)
    plot_robustness(summary, tmp_path / "robustness.png")
    assert (tmp_path / "robustness.png").stat().st_size > 10_000


@pytest.mark.parametrize("size", [(500, 375), (333, 500), (71, 64)])
def test_images_resized_once_give_the_suite_the_same_inputs_as_the_originals(size):
    prep = resolve_preprocessing("resnet18", TransformArguments(image_size=64))
    original = Image.fromarray(cv2.resize(_smooth_image(7), size, interpolation=cv2.INTER_CUBIC))
    split = datasets.Dataset.from_dict({"image": [original]}, features=datasets.Features({"image": datasets.Image()}))
    cached = cache_images(split, eval_steps(prep).resize, "test")[0]["image"]
    to_model = build_eval_transform(prep)
    assert torch.equal(to_model(cached), to_model(split[0]["image"]))
    corruption = CorruptionTransform(prep, "gaussian_blur", 3, seed=0)
    assert np.array_equal(np.asarray(corruption(cached, 5)), np.asarray(corruption(split[0]["image"], 5)))
