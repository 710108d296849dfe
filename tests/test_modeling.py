"""The model: labels in its config, where weights come from, and a saved folder that every loader reads alike."""

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from flowers_hf.core.errors import PretrainedWeightsUnavailableError
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.training.layer_groups import parameter_groups, set_trainable

NAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"]


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(ModelArguments(model="test_resnet", pretrained=False, **overrides), NAMES).eval()


def test_config_carries_the_class_names():
    model = _model()
    assert model.config.id2label == dict(enumerate(NAMES))
    assert model.config.label2id["sweet pea"] == 3
    assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 4)


def test_pretrained_weights_offline_fail_with_the_fix():
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"--pretrained false.*--pretrained_path"):
        build_model(ModelArguments(model="resnet18", pretrained=True), NAMES)


def test_pretrained_path_loads_the_backbone_from_a_local_file_and_starts_a_new_head(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    path = tmp_path / "imagenet.safetensors"
    save_file(source.state_dict(), str(path))
    model = build_model(ModelArguments(model="test_resnet", pretrained_path=str(path)), NAMES)
    loaded, expected = model.timm_model.state_dict(), source.state_dict()
    backbone = [name for name in expected if not name.startswith("fc.")]
    assert all(torch.equal(loaded[name], expected[name]) for name in backbone)
    assert model.timm_model.fc.out_features == 4


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="not a timm architecture"):
        build_model(ModelArguments(model="no_such_net", pretrained=False), NAMES)


@pytest.fixture
def saved(tmp_path):
    model = _model()
    # Saved after a linear probe: frozen BatchNorm layers must come back as regular ones in the folder.
    set_trainable(model.timm_model, parameter_groups(model.timm_model), last_n=1)
    prep = resolve_preprocessing(model.timm_model, TransformArguments(image_size=48))
    save_model(model, tmp_path, prep)
    return model, prep, tmp_path


def test_saved_folder_is_timm_layout_with_names_and_preprocessing(saved):
    _, _, folder = saved
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json"}
    config = json.loads((folder / "config.json").read_text())
    assert config["label_names"] == NAMES
    assert config["pretrained_cfg"]["input_size"] == [3, 48, 48]
    assert "num_classes" not in config.get("model_args", {})


def test_three_loaders_give_the_same_logits(saved):
    model, _, folder = saved
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(images).logits
        auto = AutoModelForImageClassification.from_pretrained(folder).eval()
        from_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        assert torch.allclose(auto(images).logits, expected, atol=1e-5)
        assert torch.allclose(from_timm(images), expected, atol=1e-5)
    assert auto.config.id2label[1] == NAMES[1]


def test_pipeline_and_image_processor_match_our_eval_transform(saved):
    model, prep, folder = saved
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8))
    ours = build_eval_transform(prep)(image)
    processor = AutoImageProcessor.from_pretrained(folder)
    assert torch.allclose(processor(image, return_tensors="pt")["pixel_values"][0], ours, atol=1e-5)
    classifier = pipeline("image-classification", model=str(folder), top_k=4)
    with torch.no_grad():
        probabilities = model(ours[None]).logits.softmax(-1)[0]
    result = {entry["label"]: entry["score"] for entry in classifier(image)}
    assert set(result) == set(NAMES)
    for i, name in enumerate(NAMES):
        assert result[name] == pytest.approx(probabilities[i].item(), abs=1e-5)


def test_saved_folder_is_a_model_argument(saved):
    model, _, folder = saved
    again = build_model(ModelArguments(model=str(folder)), NAMES).eval()
    images = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(again(images).logits, model(images).logits, atol=1e-5)
    # Its preprocessing comes with it.
    assert resolve_preprocessing(again.timm_model).input_size == (48, 48)
