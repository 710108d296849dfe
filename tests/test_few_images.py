"""Fits on few validation images (flowers_hf.evaluation.few_images): the temperature, the unsure threshold and the
open-set thresholds warn with the count and a seeded bootstrap interval, and the cards say what they rest on."""

import logging
import re
from dataclasses import replace

import numpy as np
import pytest

from flowers_hf.evaluation.calibration import Calibration, fit_calibration, fit_temperature, nll_optimal_temperatures
from flowers_hf.evaluation.few_images import FEW_IMAGES, bootstrap_interval
from flowers_hf.evaluation.ood import open_set_report
from flowers_hf.reporting.card_sections import add_open_set_section
from flowers_hf.reporting.model_card import build_model_card, calibration_text

_INTERVAL = re.compile(r"^(.+?) = ([\d.]+) rests on (\d+) (.+?) only .*? bootstrap interval is \[([\d.]+), ([\d.]+)\]")


def _held_out(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of an overconfident 5-class model (right ~70 % of the time) on ``count`` images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, count)
    logits = rng.normal(0, 3, (count, 5))
    logits[np.arange(count), labels] += 4.0
    return logits, labels


def _warnings(caplog) -> dict[str, tuple]:
    """``{quantity: (value, count, images, low, high)}`` of each few-images warning logged."""
    found = {}
    for record in caplog.records:
        if match := _INTERVAL.search(record.getMessage()):
            found[match[1]] = (float(match[2]), int(match[3]), match[4], float(match[5]), float(match[6]))
    return found


def test_twenty_images_warn_with_the_count_and_an_interval_around_the_fit(caplog):
    logits, labels = _held_out(20)
    with caplog.at_level(logging.WARNING):
        calibration = fit_calibration(logits, labels)
    correct = int((logits.argmax(axis=1) == labels).sum())
    assert calibration.num_images == 20 and calibration.num_correct == correct
    warned = _warnings(caplog)
    value, count, images, low, high = warned["The temperature T"]
    assert count == 20 and images == "validation images"
    assert value == pytest.approx(fit_temperature(logits, labels), abs=1e-4)
    assert low < value < high and calibration.temperature_interval == pytest.approx([low, high], abs=1e-4)
    value, count, images, low, high = warned["The unsure threshold"]
    assert count == correct and images == "correctly classified validation images"
    assert value == pytest.approx(calibration.unsure_threshold, abs=1e-4)
    assert low <= value <= high and calibration.threshold_interval == pytest.approx([low, high], abs=1e-4)


def test_the_interval_is_seeded_and_narrows_with_more_images(caplog):
    small, large = _held_out(20), _held_out(2000)
    assert fit_calibration(*small) == fit_calibration(*small)  # the same resamples every time

    def width(logits, labels) -> float:
        low, high = bootstrap_interval(
            lambda rows: nll_optimal_temperatures(logits[rows], labels[rows]), len(labels), resamples=100
        )
        assert low < fit_temperature(logits, labels) < high
        return high - low

    assert width(*small) > 3 * width(*large)  # about √100 = 10 times in theory
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        calibration = fit_calibration(*large)
    assert not _warnings(caplog)  # from FEW_IMAGES on: not a word, no interval
    assert FEW_IMAGES <= 2000 and calibration.temperature_interval is calibration.threshold_interval is None
    assert calibration.num_images == 2000


def test_a_stored_calibration_without_the_counts_still_loads():
    from transformers import PretrainedConfig

    stored = {"temperature": 1.5, "unsure_threshold": 0.4, "ece_before": 0.1, "ece_after": 0.05}
    loaded = Calibration.from_config(PretrainedConfig(calibration=stored))
    assert loaded.num_images is None and calibration_text(loaded) == ""


def test_open_set_thresholds_on_few_images_warn_and_the_card_says_so(caplog, tmp_path):
    logits, labels = _held_out(20)
    unknown = np.random.default_rng(1).normal(0, 3, (30, 5))
    calibration = Calibration(temperature=1.0, unsure_threshold=0.5, ece_before=0.1, ece_after=0.1)
    with caplog.at_level(logging.WARNING):
        report = open_set_report((logits, labels), (logits, labels), unknown, calibration, "noise")
    correct = logits.argmax(axis=1) == labels
    assert report["thresholds_rest_on"] == correct.sum()
    for name, entry in report["scores"].items():
        low, high = entry["threshold_interval"]
        assert low <= entry["threshold"] <= high, name
    warned = _warnings(caplog)
    for name in ("maximum softmax probability", "maximum logit", "negative energy"):
        value, count, images, low, high = warned[f"The {name} threshold"]
        assert count == correct.sum() and images == "correctly classified validation images" and low <= value <= high
    card = tmp_path / "README.md"
    card.write_text("# card\n")
    add_open_set_section(card, report, "ood_scores.png")
    text = card.read_text()
    assert f"({correct.sum()} images: each threshold rests on these)" in text
    assert "That is few: the thresholds' 95% bootstrap intervals are" in text
    # With enough images: the count, no interval.
    many_logits, many_labels = _held_out(2000)
    report = open_set_report((logits, labels), (many_logits, many_labels), unknown, calibration, "noise")
    assert all(entry["threshold_interval"] is None for entry in report["scores"].values())


def test_the_model_card_names_how_many_images_the_temperature_and_threshold_rest_on():
    from test_model_card import summary as summary_fixture  # the card test's summary

    logits, labels = _held_out(20)
    calibration = fit_calibration(logits, labels)
    summary = replace(summary_fixture.__wrapped__(), calibration=calibration)
    text = str(build_model_card(summary))
    t_low, t_high = calibration.temperature_interval
    assert f"rests on 20 validation images, the unsure threshold ({calibration.unsure_threshold:.4f}) on the " \
        f"{calibration.num_correct} of them classified correctly" in text  # fmt: skip
    assert f"That is few: T in [{t_low:.4f}, {t_high:.4f}]" in text
    many = replace(calibration, num_images=2000, num_correct=1800, temperature_interval=None, threshold_interval=None)
    text = str(build_model_card(replace(summary, calibration=many)))
    assert "rests on 2,000 validation images" in text and "1,800 of them" in text and "That is few" not in text


def test_the_temperatures_bisection_matches_a_reference_minimiser():
    from scipy.optimize import minimize_scalar

    from flowers_hf.evaluation.calibration import negative_log_likelihood

    logits, labels = _held_out(300, seed=3)

    def nll(temperature: float) -> float:
        return negative_log_likelihood(logits, labels, temperature)

    reference = minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-10}).x
    assert fit_temperature(logits, labels) == pytest.approx(reference, rel=1e-5)
    # Several sets at once give each its own fit; one classified all correctly is clipped at T = 0.01.
    perfect = np.eye(5)[labels[:40]] * 10
    both = nll_optimal_temperatures(np.stack([logits[:40], perfect]), np.stack([labels[:40], labels[:40]]))
    assert both[0] == pytest.approx(fit_temperature(logits[:40], labels[:40]), rel=1e-9)
    assert both[1] == pytest.approx(0.01)


@pytest.mark.slow
def test_a_trained_runs_card_and_config_say_what_the_calibration_rests_on(tiny_run):
    import json

    config = json.loads((tiny_run / "config.json").read_text())
    stored, validation = config["calibration"], config["dataset"]["split_sizes"]["validation"]
    assert validation == 30  # helpers.TINY_RUN: 6 classes × 40 images, an eighth of them validation
    assert stored["num_images"] == validation and 0 < stored["num_correct"] <= validation
    low, high = stored["temperature_interval"]
    assert low <= stored["temperature"] <= high or stored["temperature"] == 1.0  # 1: the fit raised the ECE
    card = (tiny_run / "README.md").read_text()
    assert f"rests on {validation} validation images" in card and "That is few: T in [" in card
