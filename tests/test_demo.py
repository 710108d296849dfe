"""The Gradio app, started as a person starts it and called through its API with gradio_client."""

import importlib.util

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from helpers import ROOT
from PIL import Image

spec = importlib.util.spec_from_file_location("flowers_demo", ROOT / "demo" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


def _top5(result: dict) -> list[tuple[str, float]]:
    return [(entry["label"], entry["confidence"]) for entry in result["confidences"]]


@pytest.mark.slow
def test_predict_endpoint_returns_the_five_most_likely_flowers(client, photo, tiny_run):
    result = client.predict(handle_file(str(photo)), api_name="/predict")
    top5 = _top5(result)
    assert len(top5) == 5
    assert result["label"] == top5[0][0]
    scores = [score for _, score in top5]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    # The same numbers as the library's predict on the same file.
    expected = app.FlowerClassifier.from_pretrained(tiny_run).predict(photo)
    assert dict(top5) == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_only_predict_is_public(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/predict"}


@pytest.mark.slow
def test_no_image_gets_a_message(client):
    with pytest.raises(AppError, match="No image"):
        client.predict(None, api_name="/predict")


@pytest.mark.slow
def test_an_animated_gif_is_classified_by_its_first_frame(client, tmp_path):
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = tmp_path / "first.png"
    frames[0].save(first)
    gif = dict(_top5(client.predict(handle_file(str(path)), api_name="/predict")))
    assert gif == pytest.approx(dict(_top5(client.predict(handle_file(str(first)), api_name="/predict"))), abs=1e-4)


def test_it_binds_loopback_without_a_share_link_by_default(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    args = app.parse_args(["--model", "some/model"])
    assert (args.host, args.share) == ("127.0.0.1", False)


def test_the_model_comes_from_MODEL_ID_in_a_space(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "someone/flowers-resnet18")
    assert app.parse_args([]).model == "someone/flowers-resnet18"
    monkeypatch.delenv("MODEL_ID")
    with pytest.raises(SystemExit):
        app.parse_args([])


def test_examples_are_images_in_the_examples_folder():
    examples = app.example_images()
    assert examples and all(Image.open(path).size for path in examples)


@pytest.mark.slow
def test_the_verdict_names_the_flower_or_says_unsure_below_the_stored_threshold(tiny_run):
    classifier = app.FlowerClassifier.from_pretrained(tiny_run)
    classifier.unsure_threshold = 0.4  # as train.py stores it in config.json["calibration"]
    assert app.verdict(classifier, {"rose": 0.39, "daisy": 0.2}).startswith("### Not a flower I know")
    assert "*rose*" in app.verdict(classifier, {"rose": 0.39, "daisy": 0.2})
    assert app.verdict(classifier, {"daisy": 0.2, "rose": 0.4}).startswith("### rose\n40%")
    assert app.verdict(classifier, None) == ""
    classifier.unsure_threshold = None  # a model without calibration never says unsure
    assert app.verdict(classifier, {"rose": 0.05}).startswith("### rose")
