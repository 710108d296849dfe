"""The demo's "why" view: Grad-CAM of the top class on the last feature stage of any timm CNN."""

import importlib.util

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from helpers import ROOT
from matplotlib import colormaps
from PIL import Image

from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.explain import HeatMapper, cam_layer, grad_cam, heat_mapper, overlay

NAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]


def _timm(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=3).eval()


@pytest.mark.parametrize(
    ("name", "layer"),
    [("test_resnet", "layer4"), ("test_efficientnet", "blocks.4"), ("convnext_atto", "stages.3")],
)
def test_the_layer_is_the_last_feature_stage_and_the_map_covers_the_input(name, layer):
    model = _timm(name)
    assert cam_layer(model) is model.get_submodule(layer)
    heat = grad_cam(model, cam_layer(model), torch.randn(1, 3, 64, 48), target=1)
    assert heat.shape == (64, 48) and heat.min() >= 0 and heat.max() in (0.0, 1.0)


def test_it_is_grad_cam_by_hand():
    # Grad-CAM: each channel of the feature map weighted by the mean gradient of the class score, summed, ReLU,
    # upsampled to the input (bilinear), scaled to a peak of 1.
    model = _timm("test_resnet")
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    features = model.forward_features(pixels)  # ends with layer4, as timm's ResNet does
    score = model.forward_head(features)[0, 2]
    (gradient,) = torch.autograd.grad(score, features)
    cam = F.relu((gradient.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(64, 64), mode="bilinear")[0, 0].detach().double().numpy()
    expected = cam / cam.max()
    np.testing.assert_allclose(grad_cam(model, model.layer4, pixels, target=2), expected, atol=1e-5)


def test_a_model_without_a_feature_map_has_no_heat_map():
    model = _timm("test_vit")
    with pytest.raises(ValueError, match="not a 2-D feature map"):
        grad_cam(model, cam_layer(model), torch.randn(1, 3, 160, 160), target=0)


def test_the_overlay_blends_the_jet_colours_over_the_view():
    view = np.full((4, 4, 3), 200, np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    blended = overlay(view, heat, alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (4, 4, 3)
    for (row, column), value in (((0, 0), 1.0), ((3, 3), 0.0)):
        colour = np.asarray(colormaps["jet"](value)[:3])
        np.testing.assert_allclose(blended[row, column], np.round((0.5 * 200 / 255 + 0.5 * colour) * 255), atol=1)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> ImageClassifier:
    folder = tmp_path_factory.mktemp("cam_model")
    torch.manual_seed(0)
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), NAMES)
    save_model(model, folder, resolve_preprocessing(model.timm_model))
    return ImageClassifier.from_pretrained(folder)


def _photo() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))


def test_the_heat_map_explains_the_top_class_over_the_models_view(classifier):
    mapper = HeatMapper(classifier)
    photo = _photo()
    name, shown = mapper(photo)
    assert name == next(iter(classifier.predict(photo, top_k=1)))
    view = classifier.model_view(photo)
    assert shown.shape == view.shape and shown.dtype == np.uint8 and not np.array_equal(shown, view)
    assert mapper(photo, NAMES[2])[0] == NAMES[2]


def test_it_works_on_a_copy_so_that_predictions_elsewhere_are_untouched(classifier):
    mapper = HeatMapper(classifier)
    assert mapper.model is not classifier.model.timm_model
    assert not any(p.requires_grad for p in mapper.model.parameters())  # no weight gradients to compute
    before = classifier.predict(_photo())
    mapper(_photo())
    assert not classifier.model.timm_model._forward_hooks and not cam_layer(classifier.model.timm_model)._forward_hooks
    assert classifier.predict(_photo()) == before


spec = importlib.util.spec_from_file_location("flowers_demo_explain", ROOT / "demo" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


def test_the_heat_map_and_the_view_of_the_prepared_input_are_those_of_the_photo(classifier):
    mapper, photo = HeatMapper(classifier), _photo()
    prepared = classifier.prepare(photo)  # what the demo keeps from its prediction
    assert torch.equal(prepared, classifier.preprocess(photo)[None])
    np.testing.assert_array_equal(classifier.model_view(prepared), classifier.model_view(photo))
    for name in (None, NAMES[2]):
        (explained, shown), (expected_name, expected) = mapper(prepared, name), mapper(photo, name)
        assert explained == expected_name
        np.testing.assert_array_equal(shown, expected)


def test_the_demo_explains_the_label_it_shows_and_nothing_without_one(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "is_in_or_equal", lambda path, folder: True)  # as if Gradio had stored the upload
    path = tmp_path / "photo.png"
    _photo().save(path)
    mapper = HeatMapper(classifier)
    click, photo = app.Click(classifier, mapper), app.open_image(path)
    # The label shows NAMES[1] on top: its heat map, over the input predict prepared.
    click.recent.put(str(path), app.Prepared(({NAMES[1]: 0.6, NAMES[0]: 0.4}, 0.6), classifier.prepare(photo)))
    shown = click.why(str(path))
    np.testing.assert_array_equal(shown, app.enlarged(mapper(photo, NAMES[1])[1]))
    assert min(shown.shape[:2]) >= app.VIEW_PIXELS // 2
    assert app.Click(classifier, mapper=None).why(str(path)) is None  # without the view
    click.recent.put(str(path), app.Prepared("This file is not an image."))  # a photo that was not classified
    assert click.why(str(path)) is None
    assert click.why(None) is None  # no photo: predict has said so already


def test_the_why_view_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("EXPLAIN", raising=False)
    assert app.parse_args(["--model", "some/model"]).explain is True
    assert app.parse_args(["--model", "some/model", "--no-explain"]).explain is False
    monkeypatch.setenv("EXPLAIN", "0")  # a Space variable
    assert app.parse_args(["--model", "some/model"]).explain is False
    assert app.parse_args(["--model", "some/model", "--explain"]).explain is True
    monkeypatch.delenv("EXPLAIN")
    # ONNX Runtime gives no gradients: no heat map unless asked for, which is refused.
    assert app.parse_args(["--model", "some/model", "--backend", "onnx"]).explain is False
    with pytest.raises(SystemExit):
        app.parse_args(["--model", "some/model", "--backend", "onnx", "--explain"])


def _why_block(demo):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "why")


def test_the_app_shows_the_why_view_where_the_model_has_one(classifier, tmp_path, caplog):
    assert _why_block(app.build_demo(classifier)).visible is True
    assert _why_block(app.build_demo(classifier, explain=False)).visible is False
    # A vision transformer has no feature map to read: the app starts without the view, and says so once.
    torch.manual_seed(0)
    vit = build_model(ModelArguments(model="test_vit", pretrained=False), NAMES)
    save_model(vit, tmp_path, resolve_preprocessing(vit.timm_model))
    assert heat_mapper(ImageClassifier.from_pretrained(tmp_path)) is None
    assert "No heat maps for this model" in caplog.text
    assert _why_block(app.build_demo(ImageClassifier.from_pretrained(tmp_path))).visible is False


@pytest.mark.slow  # a bench script end to end
def test_the_benchmark_times_the_prediction_the_heat_map_and_a_click_in_turn(capsys):
    from bench import explain as bench_explain

    summary = bench_explain.main(["--architecture", "test_resnet", "--image_size", "32", "--runs", "2"])
    assert summary["input_size"] == [32, 32]
    for key in ("predict_ms_p50", "heat_map_ms_p50", "predict_cpu_ms_p50", "heat_map_cpu_ms_p95"):
        assert summary[key] > 0
    ratio = summary["heat_map_cpu_ms_p50"] / summary["predict_cpu_ms_p50"]
    assert summary["heat_map_over_predict_cpu"] == pytest.approx(ratio, abs=0.01)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"model": "test_resnet"')
    # One click on the demo decodes and preprocesses the photo once; as it ran before, 3 and 4 times.
    counts = [summary[f"{name}_{what}"] for name in ("click", "click_before") for what in ("decodes", "preprocessings")]
    assert counts == [1, 1, 3, 4]
    assert summary["click_ms_p50"] > 0 and summary["click_before_cpu_ms_p50"] > 0
