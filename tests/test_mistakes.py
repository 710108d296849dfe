"""Mistakes a person can look at: the most confident wrong predictions, accuracy per class, the confused pairs, the
files that show them and the model card that embeds them."""

import json

import datasets
import numpy as np
import pytest
import torch
from helpers import on_white, pixels_near, png_pixels
from matplotlib import colormaps
from PIL import Image

from flowers_hf.data.identity import identify
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.evaluation.mistakes import Mistake, confused_pairs, per_class_accuracy, top_mistakes, worst_first
from flowers_hf.reporting import plots, run_folder
from flowers_hf.reporting.model_card import RunSummary, build_model_card
from flowers_hf.reporting.plots import plot_per_class_accuracy, plot_top_mistakes
from flowers_hf.reporting.run_folder import CONFUSIONS_FILE, PER_CLASS_ACCURACY, TOP_MISTAKES, write_test_report

NAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
# Six images of three classes; rows 1, 3 and 5 are wrong, with top-1 probabilities of about 0.67, 0.84 and 0.50.
LOGITS = np.array(
    [
        [3.0, 0.0, 0.0],  # 0: right
        [0.0, 1.0, 0.3],  # 1: class 0 taken for 1
        [0.0, 4.0, 0.0],  # 2: right
        [0.0, 0.0, 2.0],  # 3: class 1 taken for 2
        [0.0, 0.0, 5.0],  # 4: right
        [1.0, 1.0, 0.0],  # 5: class 2 taken for 0 (a tie with class 1: argmax takes the first)
    ]
)
LABELS = np.array([0, 0, 1, 1, 2, 2])


def _probability(row: int) -> float:
    exp = np.exp(LOGITS[row] - LOGITS[row].max())
    return float(exp.max() / exp.sum())


def test_top_mistakes_are_the_wrong_predictions_most_confident_first():
    mistakes = top_mistakes(LOGITS, LABELS, k=10)
    assert [(m.index, m.label, m.predicted) for m in mistakes] == [(3, 1, 2), (1, 0, 1), (5, 2, 0)]
    assert [m.probability for m in mistakes] == pytest.approx([_probability(3), _probability(1), _probability(5)])
    assert [m.index for m in top_mistakes(LOGITS, LABELS, k=2)] == [3, 1]


def test_top_mistakes_report_calibrated_probabilities():
    # A temperature above 1 flattens the probabilities; which images are wrong does not change.
    hot = top_mistakes(LOGITS, LABELS, temperature=2.0)
    assert [m.index for m in hot] == [3, 1, 5]
    exp = np.exp(LOGITS[3] / 2.0)
    assert hot[0].probability == pytest.approx(exp.max() / exp.sum())
    assert top_mistakes(LOGITS[[0, 2, 4]], LABELS[[0, 2, 4]]) == []


def test_per_class_accuracy_is_each_class_recall_and_nan_without_images():
    labels = np.array([0, 0, 0, 0, 1, 1, 3])
    predictions = np.array([0, 0, 0, 1, 1, 2, 0])
    accuracy = per_class_accuracy(labels, predictions, num_classes=4)
    np.testing.assert_allclose(accuracy, [0.75, 0.5, np.nan, 0.0])


def test_confused_pairs_count_each_true_and_predicted_pair_most_first():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    predictions = np.array([1, 1, 2, 0, 0, 1, 1, 2, 2, 0])
    pairs = confused_pairs(labels, predictions, NAMES)
    counted = [(p["true_id"], p["predicted_id"], p["count"]) for p in pairs]
    assert counted == [(0, 1, 2), (1, 0, 2), (0, 2, 1), (2, 0, 1)]
    assert pairs[0] == {
        "true": "pink primrose",
        "predicted": "hard-leaved pocket orchid",
        "true_id": 0,
        "predicted_id": 1,
        "count": 2,
        "share_of_true": round(2 / 3, 4),
    }
    assert pairs[1]["share_of_true"] == 0.5  # 2 of the 4 images of class 1
    assert len(confused_pairs(labels, predictions, NAMES, top=1)) == 1
    assert confused_pairs(labels, labels, NAMES) == []


def _flat_split(colours: list[tuple[int, int, int]], labels: list[int]) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    images = [Image.new("RGB", (40, 30), colour) for colour in colours]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


COLOURS = [(10 * k, 200 - 20 * k, 90) for k in range(6)]


def test_the_report_shows_the_images_of_the_mistakes_in_order(tmp_path, monkeypatch):
    shown = {}
    record = lambda images, mistakes, *args: shown.update(m=mistakes, i=images)  # noqa: E731
    monkeypatch.setattr(run_folder, "plot_top_mistakes", record)
    prep = resolve_preprocessing("test_resnet")
    write_test_report(LOGITS, LABELS, NAMES, tmp_path, _flat_split(COLOURS, LABELS.tolist()), prep, temperature=1.0)
    assert [m.index for m in shown["m"]] == [3, 1, 5]
    assert [image.getpixel((0, 0)) for image in shown["i"]] == [COLOURS[3], COLOURS[1], COLOURS[5]]


def test_the_report_writes_the_mistakes_the_accuracy_per_class_and_the_confused_pairs(tmp_path):
    prep = resolve_preprocessing("test_resnet")
    returned = write_test_report(LOGITS, LABELS, NAMES, tmp_path, _flat_split(COLOURS, LABELS.tolist()), prep)
    confusions = json.loads((tmp_path / CONFUSIONS_FILE).read_text())
    assert confusions == returned
    assert (confusions["num_images"], confusions["num_wrong"]) == (6, 3)
    assert {(p["true"], p["predicted"], p["count"]) for p in confusions["pairs"]} == {
        ("pink primrose", "hard-leaved pocket orchid", 1),
        ("hard-leaved pocket orchid", "canterbury bells", 1),
        ("canterbury bells", "pink primrose", 1),
    }
    # Predictions 0, 1, 1, 2, 2, 0 against 0, 0, 1, 1, 2, 2: one right of two for each class, each way.
    report = json.loads((tmp_path / "classification_report.json").read_text())
    for name in NAMES:
        assert report[name] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    assert report["accuracy"] == 0.5
    # The figures, read back. The three mistaken images, flat colours through the eval transform, as the model saw
    # them (a cell of about 160 × 160 pixels each):
    mistakes = png_pixels(tmp_path / TOP_MISTAKES)
    assert min(mistakes.shape[:2]) > 200
    for row in (3, 1, 5):
        assert pixels_near(mistakes, COLOURS[row], tolerance=2) > 10_000, row
    assert pixels_near(mistakes, COLOURS[0], tolerance=2) == 0  # a right answer is not shown
    # The row-normalised confusion matrix: six cells at 0.5 and three at 0 (beside the colour bar's thin bands).
    matrix = png_pixels(tmp_path / "confusion_matrix.png")
    half, empty = (pixels_near(matrix, 255 * np.asarray(colormaps["Blues"](v)[:3]), tolerance=1) for v in (0.5, 0.0))
    assert empty > 10_000 and half == pytest.approx(2 * empty, rel=0.15)
    # Every class's bar is red: all three are among the ten worst named.
    accuracy = png_pixels(tmp_path / PER_CLASS_ACCURACY)
    assert min(accuracy.shape[:2]) > 200 and pixels_near(accuracy, on_white("tab:red", 1.0), tolerance=2) > 10_000


def test_without_the_images_there_is_no_mistakes_figure(tmp_path):
    write_test_report(LOGITS, LABELS, NAMES, tmp_path)
    assert (tmp_path / CONFUSIONS_FILE).is_file() and not (tmp_path / TOP_MISTAKES).exists()


# What the stubbed eval transform below turns each of COLOURS[:2] into: colours no figure has of its own.
SHOWN = {COLOURS[0]: (0, 255, 0), COLOURS[1]: (255, 0, 255)}


def test_the_mistakes_figure_shows_each_image_through_the_eval_pipeline(tmp_path, monkeypatch):
    seen = []

    def eval_transform(prep):
        def transform(image):
            seen.append(image.getpixel((0, 0)))
            shown = torch.tensor(SHOWN[image.getpixel((0, 0))]) / 255.0  # normalised, as the real transform does
            return ((shown - torch.tensor(prep.mean)) / torch.tensor(prep.std))[:, None, None].expand(3, 24, 24)

        return transform

    monkeypatch.setattr(plots, "build_eval_transform", eval_transform)
    prep = resolve_preprocessing("test_resnet")
    images = [Image.new("RGB", (20, 20), colour) for colour in COLOURS[:2]]
    mistakes = [Mistake(4, 2, 0, 0.9), Mistake(0, 0, 1, 0.8)]
    plot_top_mistakes(images, mistakes, prep, NAMES, tmp_path / "m.png")
    assert seen == COLOURS[:2]
    # The figure shows the transform's output, de-normalised, not the images as they came.
    shown = png_pixels(tmp_path / "m.png")
    for original, colour in SHOWN.items():
        assert pixels_near(shown, colour, tolerance=1) > 10_000 and pixels_near(shown, original, tolerance=8) == 0
    with pytest.raises(ValueError, match="an image per mistake"):
        plot_top_mistakes(images[:1], mistakes, prep, NAMES, tmp_path / "n.png")
    plot_top_mistakes([], [], prep, NAMES, tmp_path / "none.png")  # a perfect split
    none = png_pixels(tmp_path / "none.png")
    assert not any(pixels_near(none, colour, tolerance=1) for colour in SHOWN.values())
    assert pixels_near(none, (255, 255, 255), tolerance=0) < none.shape[0] * none.shape[1]  # its text, in grey
    assert pixels_near(none, (128, 128, 128), tolerance=40) > 50


def test_classes_are_sorted_worst_first_and_those_without_images_left_out(tmp_path):
    accuracy = np.array([0.9, 0.2, np.nan, 0.5, 0.2])
    assert worst_first(accuracy).tolist() == [1, 4, 3, 0]
    plot_per_class_accuracy(accuracy, ["a", "b", "c", "d", "e"], tmp_path / "acc.png", named=2)
    with Image.open(tmp_path / "acc.png") as image:
        assert image.format == "PNG"


def _summary(**changes) -> RunSummary:
    values = dict(
        architecture="test_resnet",
        base_weights=None,
        dataset=identify("synthetic"),
        split_sizes={"train": 6, "validation": 6, "test": 12},
        class_names=NAMES,
        preprocessing=resolve_preprocessing("test_resnet"),
        stages=[],
        training={},
        validation_metrics={},
        test_metrics={"test_accuracy": 0.5},
        plots=list(run_folder.PLOTS),
        confusions=[
            {"true": "canterbury bells", "predicted": "pink primrose", "count": 3, "share_of_true": 0.25},
            {"true": "a|b", "predicted": "pink primrose", "count": 1, "share_of_true": 0.125},
        ],
    )
    return RunSummary(**{**values, **changes})


def test_the_card_embeds_the_figures_and_lists_the_confused_pairs():
    text = build_model_card(_summary()).text
    assert "![Top mistakes](top_mistakes.png)" in text
    assert "![Per class accuracy](per_class_accuracy.png)" in text
    assert "| canterbury bells | pink primrose | 3 | 25.00% |" in text
    assert "| a\\|b | pink primrose | 1 | 12.50% |" in text  # a name cannot break the table
    assert "Taken for" not in build_model_card(_summary(confusions=[])).text


@pytest.mark.slow
def test_train_writes_the_mistakes_and_its_card_shows_them(tiny_run):
    for name in (TOP_MISTAKES, PER_CLASS_ACCURACY, CONFUSIONS_FILE):
        assert (tiny_run / name).is_file()
    confusions = json.loads((tiny_run / CONFUSIONS_FILE).read_text())
    results = json.loads((tiny_run / "test_results.json").read_text())
    assert confusions["num_wrong"] == round(confusions["num_images"] * (1 - results["test_accuracy"]))
    assert sum(p["count"] for p in confusions["pairs"]) <= confusions["num_wrong"]
    card = (tiny_run / "README.md").read_text()
    assert "![Top mistakes](top_mistakes.png)" in card and "![Per class accuracy](per_class_accuracy.png)" in card
    if confusions["pairs"]:
        top = confusions["pairs"][0]
        assert f"| {top['true']} | {top['predicted']} | {top['count']} |" in card
