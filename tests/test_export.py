"""python -m flowers_hf.export and the ONNX backends: parity with transformers' pipeline, the int8 model's agreement
and accuracy change, the record and model card section, serving (ImageClassifier, the demo), the Hub push, errors."""

import asyncio
import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import ROOT
from hub_standin import HubStandIn, serve
from PIL import Image
from transformers import pipeline

from flowers_hf.core.cli import run_cli
from flowers_hf.core.errors import ArgumentError, MissingFileError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.export.__main__ import main
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.reporting.card_sections import ONNX_MARKERS, add_onnx_usage
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.onnx_backend import INPUT_NAME, OUTPUT_NAME, sha256

spec = importlib.util.spec_from_file_location("flowers_demo", ROOT / "demo" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

# The tiny run's data (helpers.TINY_RUN): 6 synthetic classes at 32 px.
TINY_DATA = DataArguments(
    dataset="synthetic", synthetic_num_classes=6, synthetic_images_per_class=40, synthetic_image_size=32
)


@pytest.fixture(scope="module")
def exported(tiny_export) -> tuple[Path, dict]:
    """The session's export of the tiny run (conftest.py): ``--format onnx --quantize int8``, compared on test."""
    return tiny_export


@pytest.fixture(scope="module")
def test_images() -> tuple[list[Image.Image], np.ndarray]:
    """The tiny run's test split, plus photos of other sizes and modes than the training images."""
    split = load_data(args=TINY_DATA).splits["test"]
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((60, 80), (33, 200))]
    photos.append(photos[0].convert("L"))
    return [*split["image"][:24], *photos], np.asarray(split["label"])


@pytest.mark.slow
def test_onnx_probabilities_equal_the_pipelines_on_the_same_images(exported, test_images):
    run, _ = exported
    images, _ = test_images
    served = ImageClassifier.from_pretrained(run, backend="onnx")
    theirs = pipeline("image-classification", model=str(run))(images, top_k=6)
    differences = []
    for image, entries in zip(images, theirs, strict=True):
        ours = served.predict(image, top_k=6)
        assert set(ours) == {entry["label"] for entry in entries}
        differences += [abs(ours[entry["label"]] - entry["score"]) for entry in entries]
    assert max(differences) <= 1e-4


@pytest.mark.slow
def test_the_onnx_model_takes_any_batch_size_and_outputs_calibrated_logits(exported, test_images):
    run, _ = exported
    images, _ = test_images
    pytorch = ImageClassifier.from_pretrained(run)
    batch = torch.stack([pytorch.preprocess(image) for image in images[:5]])
    session = ort.InferenceSession(str(run / "onnx" / "model.onnx"))
    assert session.get_inputs()[0].shape == ["batch", 3, 32, 32]
    (five,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
    (one,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch[:1].numpy()})
    with torch.inference_mode():
        expected = pytorch.model(batch).logits.numpy()  # the temperature is folded into the head
    np.testing.assert_allclose(five, expected, atol=1e-4)
    np.testing.assert_allclose(one[0], five[0], atol=1e-5)


@pytest.mark.slow
def test_int8_agreement_and_accuracy_change_are_measured_and_recorded(exported):
    run, record = exported
    comparison = record["comparison"]
    split = load_data(args=TINY_DATA).splits["test"]
    assert (comparison["split"], comparison["images"]) == ("test", len(split))
    # The same figures, measured again here through the served backends.
    served = {backend: ImageClassifier.from_pretrained(run, backend=backend) for backend in ("onnx", "onnx-int8")}
    top1 = {backend: _top1(classifier, split["image"]) for backend, classifier in served.items()}
    labels = np.asarray(split["label"])
    agreement = (top1["onnx-int8"] == top1["onnx"]).mean()
    change = 100 * ((top1["onnx-int8"] == labels).mean() - (top1["onnx"] == labels).mean())
    print(
        f"\nint8 on the synthetic test split: top-1 agreement with fp32 {agreement:.1%}, accuracy change {change:+.2f}"
    )
    assert comparison["int8_top1_agreement"] == pytest.approx(agreement)
    assert comparison["int8_accuracy_change_points"] == pytest.approx(change)
    assert comparison["onnx_accuracy"] == comparison["pytorch_accuracy"]
    assert comparison["onnx_max_abs_probability_difference"] <= 1e-4
    # Accuracy can move by at most the answers that changed; int8 keeps most of them (chance agreement: 1/6).
    assert abs(change) <= 100 * (1 - agreement) + 1e-9
    assert agreement > 0.5


def _top1(classifier: ImageClassifier, images: list[Image.Image]) -> np.ndarray:
    return np.array([int(classifier.probabilities(classifier.preprocess(image)[None])[0].argmax()) for image in images])


@pytest.mark.slow
def test_the_record_says_what_the_files_were_made_from_and_how(exported):
    run, record = exported
    assert json.loads((run / "onnx" / "export.json").read_text()) == json.loads(json.dumps(record))
    assert record["made_from"]["model_sha256"] == sha256(run / "model.safetensors")
    assert record["made_from"]["architecture"] == "test_resnet"
    assert record["made_from"]["calibration"]["temperature"] > 0
    assert record["how"]["exporter"] == "torch.onnx.export(dynamo=True)"
    assert record["how"]["input"]["shape"] == ["batch", 3, 32, 32]
    assert record["how"]["command"] == f"python -m flowers_hf.export {run} --format onnx --quantize int8"
    validation = len(load_data(args=TINY_DATA).splits["validation"])
    assert record["int8"] == {
        "method": "static", "quant_format": "QDQ", "per_channel": True, "weight_type": "QInt8",
        "activation_type": "QUInt8", "calibrate_method": "MinMax", "calibration_images": min(256, validation),
    }  # fmt: skip
    for name in ("model.onnx", "model_int8.onnx"):
        assert record["files"][name]["sha256"] == sha256(run / "onnx" / name)
    assert record["files"]["model_int8.onnx"]["bytes"] < record["files"]["model.onnx"]["bytes"] / 2


@pytest.mark.slow
def test_the_model_card_shows_how_to_run_the_exported_files(exported):
    run, _ = exported
    card = (run / "README.md").read_text()
    assert card.count(ONNX_MARKERS[0]) == 1
    assert card.index("## Serving with ONNX Runtime") < card.index("## Limitations")
    assert 'ImageClassifier.from_pretrained("path/to/this/folder", backend="onnx-int8")' in card
    assert 'hf_hub_download("path/to/this/folder", "onnx/model_int8.onnx")' in card


def test_a_second_export_replaces_the_cards_onnx_section(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# model\n\n## How to use\n\ntext\n\n## Limitations\n\n- some\n")
    record = {
        "files": {"model.onnx": {}},
        "how": {"date": "2026-12-01", "input": {"shape": ["batch", 3, 64, 64]}},
    }
    add_onnx_usage(card, record)
    add_onnx_usage(card, {**record, "files": {"model.onnx": {}, "model_int8.onnx": {}}})
    text = card.read_text()
    assert text.count("## Serving with ONNX Runtime") == 1 and text.count(ONNX_MARKERS[1]) == 1
    assert 'backend="onnx-int8"' in text and text.endswith("## Limitations\n\n- some\n")


@pytest.mark.slow  # two exports end to end, each a dynamo trace and an ONNX Runtime session
def test_without_images_int8_is_dynamic_and_nothing_is_compared(untrained_folder):
    record = main([str(untrained_folder), "--quantize", "int8", "--int8_method", "dynamic", "--eval_split", "none"])
    assert record["int8"] == {"method": "dynamic", "weight_type": "QInt8"}
    assert "comparison" not in record and set(record["files"]) == {"model.onnx", "model_int8.onnx"}
    photo = Image.new("RGB", (40, 30), (200, 50, 90))
    fp32 = ImageClassifier.from_pretrained(untrained_folder, backend="onnx").predict(photo, top_k=4)
    assert fp32 == pytest.approx(ImageClassifier.from_pretrained(untrained_folder).predict(photo, top_k=4), abs=1e-4)
    # An export without --quantize leaves no int8 file of an earlier one behind.
    main([str(untrained_folder), "--eval_split", "none"])
    assert not (untrained_folder / "onnx" / "model_int8.onnx").exists()
    with pytest.raises(MissingFileError, match="--quantize int8"):
        ImageClassifier.from_pretrained(untrained_folder, backend="onnx-int8")


def test_a_bad_folder_ends_with_one_clear_line(tmp_path, untrained_folder, caplog):
    assert run_cli(main, [str(tmp_path / "nowhere")]) == 1
    assert "is not a run folder written by train.py: config.json, model.safetensors missing" in caplog.text
    (untrained_folder / "config.json").write_text(json.dumps({"model_type": "vit", "num_labels": 4}))
    assert run_cli(main, [str(untrained_folder)]) == 1
    assert "describes a 'vit' model, not a timm one" in caplog.text
    assert run_cli(main, [str(untrained_folder), "--format", "tflite"]) == 1
    assert "--format must be one of ['onnx'], got 'tflite'" in caplog.text


def test_a_folder_without_an_export_says_how_to_make_one(untrained_folder):
    with pytest.raises(MissingFileError, match=r"has no onnx/model.onnx: export it with `python -m flowers_hf.export"):
        ImageClassifier.from_pretrained(untrained_folder, backend="onnx")
    with pytest.raises(ArgumentError, match="not one of"):
        ImageClassifier.from_pretrained(untrained_folder, backend="tensorrt")
    with pytest.raises(ArgumentError, match="runs on the CPU"):
        ImageClassifier.from_pretrained(untrained_folder, backend="onnx", device="cuda")


@pytest.mark.slow
def test_an_architecture_the_exporter_cannot_take_gets_a_clear_error(tmp_path, caplog):
    # torch 2.14's dynamo exporter fails on MaxViT's window partition (a view of a transposed tensor).
    model = build_model(ModelArguments(model="test_maxvit", pretrained=False), list(FLOWER_NAMES[:4]))
    save_model(model, tmp_path / "run", resolve_preprocessing(model.timm_model))
    assert run_cli(main, [str(tmp_path / "run"), "--eval_split", "none"]) == 1
    message = caplog.records[-1].getMessage()
    assert message.startswith("ArgumentError: The architecture 'test_maxvit' cannot be exported to ONNX")
    assert "serve it with the PyTorch backend" in message and "\n" not in message


def test_the_demo_takes_the_backend_from_a_flag_or_the_space_variable(monkeypatch):
    monkeypatch.delenv("BACKEND", raising=False)
    assert app.parse_args(["--model", "some/model"]).backend == "pytorch"
    assert app.parse_args(["--model", "some/model", "--backend", "onnx"]).backend == "onnx"
    monkeypatch.setenv("BACKEND", "onnx-int8")
    assert app.parse_args(["--model", "some/model"]).backend == "onnx-int8"
    with pytest.raises(SystemExit):  # Grad-CAM needs the PyTorch model's gradients
        app.parse_args(["--model", "some/model", "--explain"])


@pytest.mark.slow
def test_the_demo_serves_the_int8_model_with_the_same_preprocessing(exported):
    run, _ = exported
    served = ImageClassifier.from_pretrained(run, backend="onnx-int8")
    demo = app.build_demo(served)
    flat = Image.new("RGB", (64, 48), (200, 100, 50))
    assert np.array_equal(served.model_view(flat), ImageClassifier.from_pretrained(run).model_view(flat))
    assert sum(served.predict(flat, top_k=6).values()) == pytest.approx(1.0, abs=1e-5)
    # The built demo's own handlers, called as Gradio calls them: a pasted photo (a data: URL) in, the int8 model's
    # top 5 and the PyTorch model's view of the photo out.
    buffer = io.BytesIO()
    flat.save(buffer, "PNG")
    upload = {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}
    handlers = {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name == "predict"}
    handlers |= {fn.fn.__name__: fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "view"}
    ((answer,),) = asyncio.run(handlers["predict"]([upload]))
    assert list(answer) == list(served.predict(flat, top_k=5))
    assert answer == pytest.approx(served.predict(flat, top_k=5), abs=1e-6)
    view = ImageClassifier.from_pretrained(run).model_view(flat)
    assert np.array_equal(handlers["view"](upload), app.enlarged(view))


@pytest.mark.slow
def test_the_hub_push_includes_the_exported_files(exported):
    run, _ = exported
    hub, repo = HubStandIn(), "flowers-tester/flowers-onnx"
    server = serve(hub)
    environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_export_test_token", "HF_HUB_DISABLE_XET": "1"}
    environment.pop("HF_HUB_OFFLINE")
    try:
        command = [sys.executable, "-m", "flowers_hf.push", "push", str(run), "--repo", repo]
        done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    files = hub.files[f"model:{repo}"]
    for name in ("model.onnx", "model_int8.onnx", "export.json"):
        assert files[f"onnx/{name}"] == (run / "onnx" / name).read_bytes()
    card = files["README.md"].decode()
    assert f'ImageClassifier.from_pretrained("{repo}", backend="onnx-int8")' in card
    assert f'hf_hub_download("{repo}", "onnx/model_int8.onnx")' in card
