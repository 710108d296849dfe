"""The model card: metadata that round-trips through huggingface_hub, and a body that states what a user needs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from huggingface_hub import ModelCard

from flowers_hf.core.hub import is_hub_id
from flowers_hf.data.identity import OFFICIAL_SPLIT_SIZES, identify
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.reporting.model_card import RunSummary, build_model_card, write_model_card

HUB_DATASET = "dpdl-benchmark/oxford_flowers102"


@pytest.fixture
def summary() -> RunSummary:
    return RunSummary(
        architecture="test_resnet",
        base_weights="timm/test_resnet.r160_in1k",
        dataset=identify(HUB_DATASET, split_sizes=OFFICIAL_SPLIT_SIZES),
        split_sizes=OFFICIAL_SPLIT_SIZES,
        class_names=["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
        preprocessing=resolve_preprocessing("test_resnet"),
        stages=[
            {"name": "head only (frozen backbone)", "epochs": 3, "epochs_run": 3.0, "learning_rate": 1e-3},
            {"name": "full fine-tune", "epochs": 10, "epochs_run": 6.5, "learning_rate": 1e-4},
        ],
        training={"per_device_train_batch_size": 32, "optimizer": "adamw_torch", "seed": 7},
        validation_metrics={"eval_accuracy": 0.91234, "eval_top5_accuracy": 0.98, "eval_loss": 0.4},
        test_metrics={
            "test_accuracy": 0.87654,
            "test_top5_accuracy": 0.96,
            "test_macro_f1": 0.8512,
            "test_mean_per_class_accuracy": 0.8633,
            "test_loss": 0.55,
        },
        hub_model_id="alice/test-resnet-flowers",
        plots=["confusion_matrix.png", "loss_curve.png"],
    )


def _metrics(card: ModelCard) -> dict[str, float]:
    return {result.metric_name: result.metric_value for result in card.data.eval_results}


def test_written_card_round_trips_with_metadata(summary, tmp_path):
    path = write_model_card(summary, tmp_path / "run")

    assert path == tmp_path / "run" / "README.md"
    card = ModelCard.load(path)
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.library_name == "timm"
    assert {"image-classification", "timm", "transformers", "flowers-102"} <= set(card.data.tags)
    assert card.data.base_model == "timm/test_resnet.r160_in1k"
    assert card.data.datasets == [HUB_DATASET]
    assert _metrics(card) == {
        "Accuracy": 0.8765,
        "Top-5 accuracy": 0.96,
        "Macro F1": 0.8512,
        "Mean per-class accuracy": 0.8633,
    }
    assert {result.dataset_split for result in card.data.eval_results} == {"test"}
    assert {result.dataset_type for result in card.data.eval_results} == {HUB_DATASET}


def test_metrics_are_percentages_with_two_decimals(summary):
    text = build_model_card(summary).text

    assert "| Accuracy (top-1) | 91.23% | 87.65% |" in text
    assert "| Top-5 accuracy | 98.00% | 96.00% |" in text
    assert "| Macro F1 | — | 85.12% |" in text  # validation F1 missing: a dash, not a crash
    assert "| Loss | 0.4000 | 0.5500 |" in text


def test_missing_metrics_are_left_out(summary, tmp_path):
    partial = replace(summary, validation_metrics={}, test_metrics={"test_accuracy": 0.5})
    card = ModelCard.load(write_model_card(partial, tmp_path))

    assert _metrics(card) == {"Accuracy": 0.5}
    assert "Top-5" not in card.text
    assert "Macro F1" not in card.text
    assert "| Accuracy (top-1) | — | 50.00% |" in card.text


def test_no_metrics_at_all(summary, tmp_path):
    empty = replace(summary, validation_metrics={}, test_metrics={})
    card = ModelCard.load(write_model_card(empty, tmp_path))

    assert card.data.eval_results is None
    assert "No evaluation metrics were recorded" in card.text


def test_synthetic_warning_only_for_synthetic_data(summary):
    hub_text = build_model_card(summary).text
    synthetic_card = build_model_card(replace(summary, dataset=identify("synthetic")))

    assert "not real flowers" not in hub_text
    assert "not real flowers" in synthetic_card.text
    assert synthetic_card.data.datasets is None
    assert "flowers-102" not in synthetic_card.data.tags


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (HUB_DATASET, True),
        ("timm/resnet18.a1_in1k", True),
        ("synthetic", False),
        ("/data/flowers102", False),
        ("./flowers", False),
        ("~/flowers", False),
        ("data/oxford/flowers", False),
        (None, False),
    ],
)
def test_is_hub_id(source, expected):
    assert is_hub_id(source) is expected


def test_an_existing_local_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "data" / "flowers").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    assert not is_hub_id("data/flowers")


def test_local_data_and_weights_give_no_hub_metadata(summary):
    local = replace(summary, dataset=identify("/data/flowers102"), base_weights="/home/me/ckpt/model.safetensors")
    card = build_model_card(local)

    assert card.data.datasets is None
    assert card.data.base_model is None
    assert "`/data/flowers102`" in card.text  # the data source as given
    assert "/home/me" not in card.text  # but not the folder of the local checkpoint
    assert "`model.safetensors`" in card.text


def test_random_init_says_so(summary):
    text = build_model_card(replace(summary, base_weights=None)).text

    assert "trained from scratch" in text
    assert "random initialisation" in text


def test_usage_lines_for_hub_and_local(summary):
    hub_text = build_model_card(summary).text
    local_text = build_model_card(replace(summary, hub_model_id=None)).text

    assert 'timm.create_model("hf-hub:alice/test-resnet-flowers", pretrained=True)' in hub_text
    assert 'pipeline("image-classification", model="alice/test-resnet-flowers")' in hub_text
    assert 'AutoModelForImageClassification.from_pretrained("alice/test-resnet-flowers")' in hub_text
    assert "local-dir:" not in hub_text
    assert 'timm.create_model("local-dir:path/to/this/folder", pretrained=True)' in local_text
    assert 'pipeline("image-classification", model="path/to/this/folder")' in local_text
    assert "hf-hub:" not in local_text


def test_body_sections_plots_and_classes(summary):
    text = build_model_card(summary).text

    for heading in ("## Data", "## Training recipe", "## Preprocessing", "## Results", "## Classes", "## Limitations"):
        assert heading in text
    assert "![Confusion matrix](confusion_matrix.png)" in text
    assert "![Loss curve](loss_curve.png)" in text
    assert "accuracy_curve.png" not in text
    assert "| 1 | hard-leaved pocket orchid |" in text
    assert "| full fine-tune | 6.5 / 10 | 0.0001 | — |" in text
    # test_resnet's data config: 160 px input, crop_pct 0.95, so the shorter side is resized to floor(160 / 0.95)
    assert "| Input size (H × W) | 160 × 160 |" in text
    assert "resize the shorter side to 168, then centre crop 160 × 160" in text


def test_secrets_and_absolute_paths_stay_out(summary):
    training = {**summary.training, "hub_token": "hf_secret123", "output_dir": "/home/me/runs/x"}
    text = build_model_card(replace(summary, training=training)).text

    assert "hf_secret123" not in text
    assert "/home/me" not in text
    assert "| optimizer | adamw_torch |" in text


def test_squash_crop_is_described():
    preprocessing = Preprocessing(
        input_size=(224, 256),
        crop_pct=1.0,
        crop_mode="squash",
        interpolation="bilinear",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    summary = RunSummary(
        architecture="resnet18",
        base_weights=None,
        dataset=identify("synthetic"),
        split_sizes={"train": 8},
        class_names=["a", "b"],
        preprocessing=preprocessing,
        stages=[],
        training={},
        validation_metrics={},
        test_metrics={},
    )
    text = build_model_card(summary).text

    assert "| Input size (H × W) | 224 × 256 |" in text
    assert "resize to 224 × 256 (aspect ratio not kept), then centre crop 224 × 256" in text
