"""Calibration: ECE by hand, temperature scaling, folding into the head, the unsure threshold stored and used."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.evaluation import calibration as calibration_module
from flowers_hf.evaluation.calibration import (
    Calibration,
    calibrate_model,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    fold_temperature,
    probabilities,
    reliability_bins,
    unsure_threshold,
)
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.reporting.plots import plot_reliability_diagram
from flowers_hf.serving.classifier import ImageClassifier

NAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]


def _rows(confidences: list[float], predicted: list[int], classes: int = 3) -> np.ndarray:
    """Probability rows whose top-1 class and probability are as given (the rest spread evenly)."""
    rows = np.zeros((len(confidences), classes))
    for row, (p, k) in enumerate(zip(confidences, predicted, strict=True)):
        rows[row] = (1 - p) / (classes - 1)
        rows[row, k] = p
    return rows


def test_ece_equals_a_hand_computation():
    # 15 bins of width 1/15. Bin (0.8667, 0.9333]: 0.90 right, 0.92 wrong; bin (0.9333, 1]: 0.95 right;
    # bin (0.5333, 0.6]: 0.55 wrong, 0.58 right; bin (0.4, 0.4667]: 0.45 wrong.
    probs = _rows([0.90, 0.92, 0.95, 0.55, 0.58, 0.45], [0, 1, 2, 0, 1, 2])
    labels = np.array([0, 0, 2, 1, 1, 0])
    expected = (2 * abs(0.5 - 0.91) + 1 * abs(1 - 0.95) + 2 * abs(0.5 - 0.565) + 1 * abs(0 - 0.45)) / 6
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    bins = reliability_bins(probs, labels)
    assert bins.counts.sum() == 6 and bins.counts[13] == 2 and bins.accuracy[13] == 0.5
    # One bin: the gap between overall accuracy and mean confidence.
    assert expected_calibration_error(probs, labels, num_bins=1) == pytest.approx(abs(3 / 6 - 4.35 / 6))


def _calibrated_data(n: int = 4000, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits with labels drawn from their own softmax: calibrated at T = 1 by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, classes))
    probs = probabilities(logits)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)  # inverse-CDF sampling
    return logits, labels


def test_temperature_scaling_undoes_over_confidence():
    logits, labels = _calibrated_data()
    over_confident = 5 * logits
    temperature = fit_temperature(over_confident, labels)
    assert temperature == pytest.approx(5.0, rel=0.1)
    before = expected_calibration_error(probabilities(over_confident), labels)
    after = expected_calibration_error(probabilities(over_confident, temperature), labels)
    assert before > 0.15 and after < before / 4
    calibration = fit_calibration(over_confident, labels)
    assert calibration.ece_before == pytest.approx(before) and calibration.ece_after == pytest.approx(after)
    assert np.array_equal(probabilities(over_confident).argmax(1), probabilities(over_confident, temperature).argmax(1))


def test_a_temperature_that_would_raise_the_ece_is_not_applied(monkeypatch, caplog):
    logits, labels = _calibrated_data()  # calibrated as they are: sharpening them raises the ECE
    monkeypatch.setattr(calibration_module, "fit_temperature", lambda logits, labels: 0.5)
    calibration = fit_calibration(logits, labels)
    before = expected_calibration_error(probabilities(logits), labels)
    assert before < expected_calibration_error(probabilities(logits, 0.5), labels)
    assert (calibration.temperature, calibration.ece_before, calibration.ece_after) == (1.0, before, before)
    assert "would raise the validation ECE" in caplog.text


def test_unsure_threshold_keeps_the_asked_share_of_correct_answers():
    # 20 correct answers with confidences 0.30, 0.33, …; keeping 95 % may turn away one of them: the lowest.
    correct = np.round(0.30 + 0.03 * np.arange(20), 2)
    wrong = np.array([0.31, 0.32, 0.9])
    probs = _rows([*correct, *wrong], [0] * 23, classes=10)
    labels = np.array([0] * 20 + [1] * 3)
    threshold = unsure_threshold(probs, labels, keep_correct=0.95)
    assert threshold == pytest.approx(0.33)
    accepted = probs.max(1) >= threshold
    assert accepted[:20].mean() == 0.95 and accepted[20:].tolist() == [False, False, True]
    assert unsure_threshold(probs, np.ones(23, dtype=int), keep_correct=0.95) is None  # nothing right


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelArguments(model="test_resnet", pretrained=False), NAMES).eval()


def test_folding_the_temperature_divides_the_logits():
    model, images = _model(), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(images).logits
        fold_temperature(model.timm_model, 2.5)
        assert torch.allclose(model(images).logits, before / 2.5, atol=1e-5)


def test_folding_refuses_a_head_that_is_not_linear():
    class TwoLayerHead(torch.nn.Module):
        def get_classifier(self):
            return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))

    with pytest.raises(ValueError, match="cannot fold a temperature into a classifier of type Sequential"):
        fold_temperature(TwoLayerHead(), 2.0)
    # At the end of training: a warning, the fit, and nothing recorded.
    model = SimpleNamespace(timm_model=TwoLayerHead(), config=SimpleNamespace())
    logits, labels = _calibrated_data(n=200)
    assert calibrate_model(model, 3 * logits, labels).temperature == pytest.approx(3, rel=0.3)
    assert Calibration.from_config(model.config) is None


def test_calibrating_twice_composes_and_records_the_product():
    model, images = _model(), torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        raw = model(images).logits.numpy()
    labels = raw.argmax(1)
    labels[::4] = (labels[::4] + 1) % 3  # 75 % right
    first = calibrate_model(model, raw, labels)
    with torch.no_grad():
        refit = model(images).logits.numpy()
    assert np.allclose(refit, raw / first.temperature, atol=1e-5)
    second = calibrate_model(model, refit, labels)
    assert second.temperature == pytest.approx(first.temperature, rel=1e-3)  # the new factor is about 1
    assert model.config.calibration["temperature"] == pytest.approx(second.temperature)
    with torch.no_grad():
        assert np.allclose(model(images).logits.numpy(), raw / second.temperature, atol=1e-4)


@pytest.fixture
def calibrated_folder(tmp_path):
    model, images = _model(), torch.randn(60, 3, 32, 32)
    with torch.no_grad():
        raw = model(images).logits
    labels = raw.argmax(1).numpy()
    labels[::3] = (labels[::3] + 1) % 3
    raw_model = _model()  # an uncalibrated twin, to compare with
    calibration = calibrate_model(model, raw.numpy(), labels)
    prep = resolve_preprocessing(model.timm_model, TransformArguments(image_size=32))
    save_model(model, tmp_path, prep)
    return tmp_path, raw_model, prep, calibration


def test_the_saved_model_gives_calibrated_probabilities_to_pipeline(calibrated_folder):
    folder, raw_model, prep, calibration = calibrated_folder
    stored = json.loads((folder / "config.json").read_text())["calibration"]
    assert set(stored) >= {"temperature", "ece_before", "ece_after", "unsure_threshold"}
    assert stored["temperature"] == pytest.approx(calibration.temperature) and calibration.temperature != 1.0
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    with torch.no_grad():
        expected = (raw_model(build_eval_transform(prep)(image)[None]).logits / calibration.temperature).softmax(-1)
    scores = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(folder), top_k=3)(image)}
    assert [scores[name] for name in NAMES] == pytest.approx(expected[0].tolist(), abs=1e-5)


def test_the_classifier_reads_the_threshold_and_flags_unsure_answers(calibrated_folder):
    folder, _, _, calibration = calibrated_folder
    classifier = ImageClassifier.from_pretrained(folder)
    assert classifier.unsure_threshold == pytest.approx(calibration.unsure_threshold)
    assert Calibration.from_config(classifier.model.config) == calibration
    threshold = classifier.unsure_threshold
    assert classifier.is_unsure(threshold - 1e-3) and not classifier.is_unsure(threshold)
    prediction = classifier.predict(Image.new("RGB", (40, 40), (200, 30, 90)), top_k=3)
    assert classifier.is_unsure(prediction) == (max(prediction.values()) < threshold)


def test_a_model_without_calibration_is_never_unsure(tmp_path):
    model = _model()
    save_model(model, tmp_path, resolve_preprocessing(model.timm_model, TransformArguments(image_size=32)))
    classifier = ImageClassifier.from_pretrained(tmp_path)
    assert classifier.unsure_threshold is None and not classifier.is_unsure(0.0)


def test_reliability_diagram_is_written(tmp_path):
    logits, labels = _calibrated_data(n=300)
    plot_reliability_diagram(3 * logits, labels, 3.0, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
