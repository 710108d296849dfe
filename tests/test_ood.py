"""Images of none of the classes: the scores, AUROC and FPR at 95 % TPR, the built-in unknown set, the held-out-classes
protocol, ``python -m flowers_hf.evaluate --ood`` and ``train.py --holdout_classes`` end to end, and the demo's rule."""

import importlib.util
import json
import math
import shutil

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY_RUN, on_white, pixels_near, png_pixels, write_imagefolder
from PIL import Image

from flowers_hf.core.errors import ArgumentError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.holdout import HELD_OUT, held_out_class_ids, held_out_names, hold_out_classes
from flowers_hf.data.image_set import load_image_set
from flowers_hf.data.synthetic_ood import KINDS, load_synthetic_ood
from flowers_hf.evaluation.calibration import Calibration, keeping_threshold, probabilities, unsure_threshold
from flowers_hf.evaluation.ood import auroc, fpr_at_tpr, open_set_report, recommend
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.open_set import OpenSetRule, energy, known_score, max_logit, msp

spec = importlib.util.spec_from_file_location("flowers_demo_ood", ROOT / "demo" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

KNOWN, UNKNOWN = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.75, 0.5, 0.3])
# The tiny run's data (helpers.TINY_RUN): 6 synthetic classes of 40 images at 32 px.
TINY_DATA = DataArguments(
    dataset="synthetic", synthetic_num_classes=6, synthetic_images_per_class=40, synthetic_image_size=32
)


def _logits(classifier: ImageClassifier, images: list) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate(
            [classifier.logits(torch.stack([classifier.preprocess(image) for image in images[i : i + 64]])).numpy()
             for i in range(0, len(images), 64)]
        )  # fmt: skip


def assert_score_figure(path, panels: int) -> None:
    """``ood_scores.png`` is a row of ``panels`` histograms with both the known (blue) and the unknown (red) scores."""
    pixels = png_pixels(path)
    height, width, _ = pixels.shape
    assert height > 200 and width > (panels - 0.5) * height  # the panels side by side
    for colour in ("tab:blue", "tab:red"):  # each histogram's bars, drawn at alpha 0.6 on white
        assert pixels_near(pixels, on_white(colour, 0.6)) > 500 * panels, colour


def test_auroc_counts_the_pairs_a_known_image_wins_ties_half():
    # 0.9 and 0.8 beat all three unknown scores, 0.7 and 0.6 beat two: 10 of 12 pairs.
    assert auroc(KNOWN, UNKNOWN) == pytest.approx(10 / 12)
    assert auroc([1.0, 1.0], [1.0, 0.0]) == pytest.approx(0.75)  # (½ + 1 + ½ + 1) / 4
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0


def test_fpr_at_95_tpr_is_the_unknown_share_above_the_threshold_that_keeps_95_percent_of_the_known():
    # Keeping all four known scores (75 % would not do) needs the threshold at 0.6, which 0.75 passes: 1 of 3.
    assert fpr_at_tpr(KNOWN, UNKNOWN) == pytest.approx(1 / 3)
    assert fpr_at_tpr(KNOWN, UNKNOWN, tpr=0.5) == 0.0  # threshold 0.8
    assert fpr_at_tpr(KNOWN, UNKNOWN, tpr=0.75) == pytest.approx(1 / 3)  # threshold 0.7
    assert fpr_at_tpr(np.arange(20.0), np.array([0.5, 18.5])) == pytest.approx(0.5)  # 19 of 20 kept from 1.0
    with pytest.raises(ValueError, match="need known and unknown"):
        fpr_at_tpr(KNOWN, [])


def test_the_three_scores_by_hand():
    logits = np.array([[0.0, math.log(3.0)], [2.0, 2.0]])
    assert energy(logits) == pytest.approx([-math.log(4.0), -(2.0 + math.log(2.0))])  # -logsumexp
    assert msp(logits) == pytest.approx([0.75, 0.5])
    assert max_logit(logits) == pytest.approx([math.log(3.0), 2.0])
    # Higher means "more like a known class" for every score: the energy enters negated.
    assert known_score(logits, "energy") == pytest.approx(-energy(logits))
    with pytest.raises(ValueError, match="unknown score"):
        known_score(logits, "entropy")


def test_the_keeping_threshold_is_the_unsure_thresholds_rule():
    assert keeping_threshold(np.arange(1, 21) / 20, 0.95) == pytest.approx(0.1)  # one of 20 below it
    assert keeping_threshold(np.array([]), 0.95) is None
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    labels = np.array([0, 0, 1, 1])  # the last one is wrong
    assert unsure_threshold(probabilities, labels, 0.5) == keeping_threshold(np.array([0.9, 0.6, 0.7]), 0.5) == 0.7


def _calibration(temperature: float = 1.0, threshold: float | None = 0.5) -> Calibration:
    return Calibration(temperature=temperature, unsure_threshold=threshold, ece_before=0.1, ece_after=0.05)


def test_the_report_chooses_thresholds_on_validation_and_recommends_the_lowest_fpr():
    # Known images have large logits, unknown ones the same shape 9 lower: MSP cannot tell them apart (the softmax
    # is shift-invariant), the maximum logit and the energy tell them apart perfectly.
    rng = np.random.default_rng(0)
    known = np.c_[rng.uniform(8, 12, 40), np.zeros(40)]
    labels = np.zeros(40, dtype=int)
    report = open_set_report((known, labels), (known, labels), known - 9.0, _calibration(), "shifted")
    scores = report["scores"]
    assert scores["msp"]["auroc"] == pytest.approx(0.5) and scores["msp"]["fpr_at_95_tpr"] == pytest.approx(0.95)
    assert scores["max_logit"]["auroc"] == scores["energy"]["auroc"] == 1.0
    assert scores["max_logit"]["fpr_at_95_tpr"] == scores["energy"]["fpr_at_95_tpr"] == 0.0
    # Each threshold keeps 95 % of the correctly classified validation images: 38 of 40.
    assert all(entry["known_accepted"] == pytest.approx(0.95) for entry in scores.values())
    assert scores["msp"]["threshold"] == pytest.approx(unsure_threshold(probabilities(known), labels))  # today's rule
    assert (
        report["recommended"]
        == OpenSetRule("max_logit", scores["max_logit"]["threshold"], 0.0, "shifted", 0.0).to_dict()
    )
    assert report["unsure_threshold_accepts"] == 1.0  # every unknown image has the known ones' top-1 probability
    # Scores read logits / T, as the saved model outputs them: T = 2 halves the maximum logit's threshold.
    halved = open_set_report((known, labels), (known, labels), known - 9.0, _calibration(2.0), "shifted")
    assert halved["scores"]["max_logit"]["threshold"] == pytest.approx(scores["max_logit"]["threshold"] / 2)
    assert recommend({name: {**entry, "threshold": None} for name, entry in scores.items()}, "x") is None


def test_the_built_in_unknown_set_is_deterministic_cached_and_no_class_of_the_flowers(tmp_path):
    first = load_synthetic_ood(8, 32, "jpeg", 0, str(tmp_path))
    again = load_synthetic_ood(8, 32, "jpeg", 0, str(tmp_path))
    assert first["test"].features["label"].names == list(KINDS)
    assert len(first["test"]) == 6 * len(KINDS)  # 8 per kind: 1 / 1 / 6
    assert again["test"].cache_files == first["test"].cache_files  # read back, not drawn again
    same = load_synthetic_ood(8, 32, "jpeg", 0, str(tmp_path / "elsewhere"))
    assert same["test"].with_format("arrow")["image"] == first["test"].with_format("arrow")["image"]
    # Image i of kind k depends on (seed, k, i) only: more images per kind keep the first ones.
    more = load_synthetic_ood(16, 32, "jpeg", 0, str(tmp_path))
    assert more["train"][0]["image"].tobytes() == first["train"][0]["image"].tobytes()
    other_seed = load_synthetic_ood(8, 32, "jpeg", 1, str(tmp_path))
    assert other_seed["test"][0]["image"].tobytes() != first["test"][0]["image"].tobytes()
    image = first["test"][0]["image"]
    assert image.mode == "RGB" and min(image.size) == 32


def test_any_source_serves_as_unknown_images_without_its_classes(tiny_args):
    # The in-distribution options (Flowers-102 names, held-out classes) do not apply to the outside set.
    args = DataArguments(**{**vars(tiny_args), "class_names": "flowers102", "holdout_classes": 1})
    outside = load_image_set("synthetic_ood", args)
    assert outside.column_names == ["image"]  # images only: the kinds are not the model's classes
    assert len(outside) == 6 * len(KINDS)  # the synthetic set's 8 images per kind: 6 test images each


def test_held_out_classes_are_a_seeded_draw_and_leave_contiguous_ids(tiny_synthetic):
    names = tiny_synthetic["train"].features["label"].names
    assert held_out_class_ids(4, 2, seed=42) == held_out_class_ids(4, 2, seed=42)
    assert len({tuple(held_out_class_ids(10, 3, seed)) for seed in range(10)}) > 1
    data = hold_out_classes(tiny_synthetic, 2, seed=42)
    held = [names[i] for i in held_out_class_ids(4, 2, seed=42)]
    kept = [name for name in names if name not in held]
    assert held_out_names(data) == sorted(held)
    for split in ("train", "validation", "test"):
        assert data[split].features["label"].names == kept
        # Every image keeps its class name under its new id.
        old = [names[label] for label in tiny_synthetic[split]["label"] if names[label] in kept]
        assert [kept[label] for label in data[split]["label"]] == old
    test_counts = np.bincount(tiny_synthetic["test"]["label"], minlength=4)
    assert len(data[HELD_OUT]) == sum(test_counts[names.index(name)] for name in held)
    assert data[HELD_OUT].column_names == ["image", "class"]
    with pytest.raises(ArgumentError, match="between 1 and 2"):
        hold_out_classes(tiny_synthetic, 3, seed=0)


def test_load_flowers_holds_classes_out_when_asked(tiny_args):
    data = load_data(args=DataArguments(**{**vars(tiny_args), "holdout_classes": 1})).splits
    assert len(data["train"].features["label"].names) == 3 and HELD_OUT in data
    assert HELD_OUT not in load_data(args=tiny_args).splits


def _with_rule(folder, rule: dict | None):
    config = json.loads((folder / "config.json").read_text())
    config["calibration"] = _calibration(threshold=0.4).to_dict()
    if rule is not None:
        config["ood"] = rule
    (folder / "config.json").write_text(json.dumps(config))
    return ImageClassifier.from_pretrained(folder)


def test_the_classifier_and_the_demo_use_the_stored_rule(untrained_folder):
    classifier = _with_rule(untrained_folder, {"score": "energy", "threshold": 2.0, "fpr_at_95_tpr": 0.1,
                                               "ood_source": "synthetic_ood", "ood_accepted": 0.05})  # fmt: skip
    assert classifier.unsure_rule == OpenSetRule("energy", 2.0, 0.1, "synthetic_ood", 0.05)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    prediction, score = classifier.predict_and_score(photo, top_k=3)
    logits = classifier.logits(classifier.preprocess(photo)[None]).numpy()
    assert score == pytest.approx(float(-energy(logits)[0]), abs=1e-5)  # the negative energy of the same pass
    assert prediction == pytest.approx(classifier.predict(photo, top_k=3))
    # The verdict follows the stored score, whatever the top-1 probability says.
    assert app.verdict(classifier, {"rose": 0.99}, 1.5).startswith("### Not one of the classes I know")
    assert "negative energy, 1.50, lies below 2.00" in app.verdict(classifier, {"rose": 0.99}, 1.5)
    assert app.verdict(classifier, {"rose": 0.05}, 2.5).startswith("### rose")
    with pytest.raises(ValueError, match="needs the image's score"):
        classifier.is_unsure({"rose": 0.05})


def test_without_a_stored_rule_the_unsure_threshold_decides(untrained_folder):
    classifier = _with_rule(untrained_folder, None)
    assert classifier.unsure_rule == OpenSetRule("msp", 0.4)
    photo = Image.new("RGB", (40, 40), (200, 30, 30))
    prediction, score = classifier.predict_and_score(photo)
    assert score == max(prediction.values())
    assert app.verdict(classifier, {"rose": 0.39}, 0.39).startswith("### Not one of the classes I know")
    assert app.verdict(classifier, {"rose": 0.41}).startswith("### rose")


@pytest.mark.slow
def test_evaluate_ood_reports_the_scores_and_stores_the_rule(tiny_run, tmp_path):
    from flowers_hf.evaluate import main

    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("stage*"))  # the fixture stays
    main([str(run), "--ood", "synthetic_ood", "--disable_tqdm", "true"])
    report = json.loads((run / "eval_test" / "ood.json").read_text())
    assert_score_figure(run / "eval_test" / "ood_scores.png", panels=3)
    assert report["num_ood"] == 30 * len(KINDS) and report["num_known"] == 6 * 30  # 40 per class or kind: 30 test
    assert set(report["scores"]) == {"msp", "max_logit", "energy"}
    # By hand, from the saved model's (temperature-scaled) logits on the test images and on the unknown ones.
    known_logits = _logits(ImageClassifier.from_pretrained(tiny_run), load_data(args=TINY_DATA).splits["test"]["image"])
    unknown_images = load_image_set("synthetic_ood", TINY_DATA)["image"]
    unknown_logits = _logits(ImageClassifier.from_pretrained(tiny_run), unknown_images)
    for name, entry in report["scores"].items():
        known, unknown = known_score(known_logits, name), known_score(unknown_logits, name)
        # AUROC: the share of (known, unknown) pairs the known image wins, ties half.
        wins = (known[:, None] > unknown[None, :]).mean() + 0.5 * (known[:, None] == unknown[None, :]).mean()
        assert entry["auroc"] == pytest.approx(wins, abs=1e-4), name
        # FPR at 95 % TPR: the unknown share at or above the highest threshold that keeps 171 of the 180 known.
        kept_from = np.sort(known)[::-1][math.ceil(0.95 * len(known)) - 1]
        assert entry["fpr_at_95_tpr"] == pytest.approx(np.mean(unknown >= kept_from), abs=1e-9), name
        assert entry["known_accepted"] == pytest.approx(np.mean(known >= entry["threshold"]), abs=1e-9), name
        assert entry["ood_accepted"] == pytest.approx(np.mean(unknown >= entry["threshold"]), abs=1e-9), name
    calibration = json.loads((tiny_run / "config.json").read_text())["calibration"]
    assert report["unsure_threshold"] == calibration["unsure_threshold"]
    assert report["scores"]["msp"]["threshold"] == pytest.approx(calibration["unsure_threshold"], abs=1e-5)
    best = min(report["scores"], key=lambda name: report["scores"][name]["fpr_at_95_tpr"])
    stored = json.loads((run / "config.json").read_text())["ood"]
    assert stored == report["recommended"] and stored["score"] == best and report["rule_stored"]
    assert ImageClassifier.from_pretrained(run).unsure_rule == OpenSetRule(**stored)
    card = (run / "README.md").read_text()
    assert card.count("## Images of none of these classes") == 1 and "eval_test/ood_scores.png" in card


@pytest.mark.slow
def test_holdout_classes_trains_on_the_others_and_scores_the_held_out_as_unknown(tmp_path):
    import train

    train.main([*TINY_RUN, "--num_train_epochs", "1", "--holdout_classes", "2", "--output_dir", str(tmp_path)])
    config = json.loads((tmp_path / "config.json").read_text())
    report = json.loads((tmp_path / "ood.json").read_text())
    names = config["label_names"]  # the model's id2label
    assert len(names) == 4 and not set(names) & set(report["held_out_classes"])
    assert len(report["held_out_classes"]) == 2 and report["num_ood"] == 2 * 30 and report["num_known"] == 4 * 30
    assert config["ood"] == report["recommended"]
    assert_score_figure(tmp_path / "ood_scores.png", panels=3)
    assert report["scores"]["msp"]["threshold"] == pytest.approx(config["calibration"]["unsure_threshold"])
    card = (tmp_path / "README.md").read_text()
    assert "`--holdout_classes 2`" in card and "![Open-set scores](ood_scores.png)" in card
    # The same classes again for the same options: the draw is recorded by them.
    args = DataArguments(dataset="synthetic", synthetic_num_classes=6, synthetic_images_per_class=40,
                         synthetic_image_size=32, holdout_classes=2)  # fmt: skip
    assert held_out_names(load_data(args=args).splits) == report["held_out_classes"]


def test_an_unknown_set_with_an_undecodable_image_leaves_it_out_and_says_so(tiny_args, tmp_path, caplog):
    folder = write_imagefolder(tmp_path / "outside", {"train": {"a": 2, "b": 2}, "test": {"a": 3, "b": 3}})
    (folder / "test" / "a" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a cut-off PNG
    outside = load_image_set(str(folder), tiny_args)
    assert len(outside) == 6  # the 6 whole test images; the broken one left out
    assert "cannot be decoded and are left out" in caplog.text and "9.png" in caplog.text
