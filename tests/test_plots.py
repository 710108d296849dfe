import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, denormalize
from flowers_hf.reporting.plots import (
    DPI,
    _curve_figure,
    normalized_confusion_matrix,
    plot_accuracy_curve,
    plot_augmentation_samples,
    plot_confusion_matrix,
    plot_loss_curve,
    series,
    stage_boundaries,
)

# Two stages as the merged log history has them: train losses between evaluations, an eval record per epoch,
# a train summary at the end of each stage; stage 2 continues the global epoch count.
TWO_STAGE_HISTORY = [
    {"epoch": 0.5, "stage": 1, "loss": 2.0, "learning_rate": 1e-3},
    {"epoch": 1.0, "stage": 1, "loss": 1.5, "grad_norm": 3.0},
    {"epoch": 1.0, "stage": 1, "eval_loss": 1.7, "eval_accuracy": 0.4, "train_accuracy": 0.5, "eval_runtime": 0.1},
    {"epoch": 1.0, "stage": 1, "train_runtime": 2.0, "train_loss": 1.75},
    {"epoch": 1.5, "stage": 2, "loss": 1.0},
    {"epoch": 2.0, "stage": 2, "loss": 0.8},
    {"epoch": 2.0, "stage": 2, "eval_loss": 0.9, "eval_accuracy": 0.7, "train_accuracy": 0.8},
    {"epoch": 3.0, "stage": 2, "eval_loss": 0.7, "eval_accuracy": 0.75},
    {"epoch": 3.0, "stage": 2, "train_runtime": 4.0},
]


def _png_size(path: Path) -> tuple[int, int]:
    """Check that ``path`` is a complete PNG file and return its size in pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def _flat_images(sizes: list[tuple[int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", size, (60 * k, 200 - 50 * k, 120)) for k, size in enumerate(sizes)]


def test_normalized_confusion_matrix_rows_are_recall_and_empty_rows_are_zero():
    labels = np.array([0, 0, 0, 0, 1, 1, 3])
    predictions = np.array([0, 0, 0, 1, 1, 2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 division warning for class 2, which has no true samples
        matrix = normalized_confusion_matrix(labels, predictions, num_classes=4)
    expected = np.array([[0.75, 0.25, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(matrix, expected)


def test_confusion_matrix_png_is_written_and_grows_with_the_number_of_classes(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {}
    for num_classes in (4, 102):
        labels = rng.integers(0, num_classes, 500)
        predictions = np.where(rng.random(500) < 0.6, labels, rng.integers(0, num_classes, 500))
        path = tmp_path / "nested" / f"confusion_{num_classes}.png"  # the folder does not exist yet
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plot_confusion_matrix(labels, predictions, [f"flower {k}" for k in range(num_classes)], path)
        sizes[num_classes] = _png_size(path)
    assert min(sizes[4]) >= 0.9 * 6 * DPI  # the 6-inch minimum keeps a 4-class matrix readable
    assert sizes[102][0] > 2 * sizes[4][0] and sizes[102][1] > 2 * sizes[4][1]
    assert max(sizes[102]) < 30 * DPI  # capped


def test_series_takes_only_the_records_that_have_the_key():
    assert series(TWO_STAGE_HISTORY, "loss") == ([0.5, 1.0, 1.5, 2.0], [2.0, 1.5, 1.0, 0.8])
    assert series(TWO_STAGE_HISTORY, "eval_accuracy") == ([1.0, 2.0, 3.0], [0.4, 0.7, 0.75])
    assert series(TWO_STAGE_HISTORY, "train_accuracy") == ([1.0, 2.0], [0.5, 0.8])
    assert series(TWO_STAGE_HISTORY, "no_such_key") == ([], [])


def test_stage_boundaries_sit_at_the_last_record_of_the_previous_stage():
    assert stage_boundaries(TWO_STAGE_HISTORY) == [(1.0, 2)]
    single_stage = [record for record in TWO_STAGE_HISTORY if record["stage"] == 1]
    assert stage_boundaries(single_stage) == []
    third_stage = [{"epoch": 3.5, "stage": 3, "loss": 0.5}, {"epoch": 4.0, "stage": 3, "eval_loss": 0.6}]
    assert stage_boundaries(TWO_STAGE_HISTORY + third_stage) == [(1.0, 2), (3.0, 3)]
    assert stage_boundaries([{"epoch": 1.0, "loss": 1.0}, {"epoch": 2.0, "stage": 2}]) == []


@pytest.mark.parametrize("keys", [("loss", "eval_loss"), ("train_accuracy", "eval_accuracy")])
def test_curve_has_a_series_per_quantity_and_a_dashed_line_per_stage_boundary(keys):
    expected_labels = ["train", "validation"]
    _, ax = _curve_figure(TWO_STAGE_HISTORY, dict(zip(keys, expected_labels, strict=True)), "quantity")
    data_lines = [line for line in ax.lines if line.get_label() in expected_labels]
    assert [line.get_label() for line in data_lines] == expected_labels
    assert list(data_lines[0].get_xdata()) == series(TWO_STAGE_HISTORY, keys[0])[0]
    assert all(line.get_marker() == "o" for line in data_lines)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [1.0, 1.0]
    assert "stage 2" in [text.get_text().strip() for text in ax.texts]
    assert ax.get_legend() is not None


@pytest.mark.parametrize("plot", [plot_loss_curve, plot_accuracy_curve])
def test_curve_png_is_written(plot, tmp_path):
    path = tmp_path / "curves" / "curve.png"
    plot(TWO_STAGE_HISTORY, path)
    width, height = _png_size(path)
    assert 400 < width < 1200 and 300 < height < 900


@pytest.mark.parametrize("plot", [plot_loss_curve, plot_accuracy_curve])
@pytest.mark.parametrize("history", [[], [{"epoch": 1.0, "stage": 1, "learning_rate": 1e-3}]])
def test_curve_without_data_writes_a_no_data_figure(plot, history, tmp_path, caplog):
    path = tmp_path / "empty.png"
    with caplog.at_level(logging.WARNING, logger="flowers_hf.reporting.plots"):
        plot(history, path)
    assert _png_size(path)[0] > 400
    assert "writing an empty" in caplog.text


def test_curve_without_data_says_so():
    _, ax = _curve_figure([{"epoch": 1.0, "stage": 1}], {"loss": "train"}, "loss")
    assert len(ax.lines) == 0
    assert [text.get_text() for text in ax.texts] == ["no data"]


def test_denormalize_inverts_normalisation_exactly():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = np.random.default_rng(0).random((5, 7, 3))  # HWC in [0, 1]
    normalized = torch.from_numpy((pixels - mean) / std).permute(2, 0, 1)  # CHW, as a transform returns
    restored = denormalize(normalized, mean, std)
    assert restored.shape == (5, 7, 3)
    np.testing.assert_allclose(restored, pixels, atol=1e-12)


def test_denormalize_clips_to_the_unit_range():
    restored = denormalize(torch.tensor([[[-10.0, 10.0]]] * 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    np.testing.assert_array_equal(restored[0], [[0.0] * 3, [1.0] * 3])


def test_denormalize_recovers_the_pixels_of_the_real_eval_transform():
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    image = Image.new("RGB", (40, 36), (200, 30, 90))  # flat, so resizing and cropping keep every pixel
    restored = denormalize(build_eval_transform(prep)(image), prep.mean, prep.std)
    assert restored.shape == (32, 32, 3)
    np.testing.assert_allclose(restored, np.broadcast_to(np.array([200, 30, 90]) / 255, (32, 32, 3)), atol=1e-6)


def test_augmentation_grid_calls_the_transform_per_sample_and_widens_with_more_samples(tmp_path):
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    train_transform = build_train_transform(prep, seed=0)
    calls = []

    def counting_transform(image: Image.Image) -> torch.Tensor:
        calls.append(image)
        return train_transform(image)

    images = _flat_images([(64, 48), (40, 56), (48, 48)])
    names = ["pink primrose", "giant white arum lily", "rose"]
    sizes = {}
    for per_image in (2, 4):
        calls.clear()
        path = tmp_path / "samples" / f"augmentations_{per_image}.png"
        plot_augmentation_samples(images, [0, 1, 2], counting_transform, prep.mean, prep.std, names, path, per_image)
        expected = [image for image in images for _ in range(per_image)]
        assert all(call is image for call, image in zip(calls, expected, strict=True))
        sizes[per_image] = _png_size(path)
    assert sizes[4][0] > sizes[2][0] * 1.4  # two more columns
    assert abs(sizes[4][1] - sizes[2][1]) < 0.1 * sizes[2][1]  # same three rows


def test_augmentation_grid_needs_a_label_per_image(tmp_path):
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    images, transform = _flat_images([(32, 32)] * 2), build_eval_transform(prep)
    with pytest.raises(ValueError, match="as many labels as images"):
        plot_augmentation_samples(images, [0], transform, prep.mean, prep.std, ["a"], tmp_path / "x.png")
