"""The Gradio app, started as a person starts it and called through its API with gradio_client; under load, with an
injected slow model: batches, a full queue, a time limit."""

import asyncio
import base64
import importlib.util
import io
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status
from helpers import ROOT, free_port
from PIL import Image

from flowers_hf.serving.open_set import OpenSetRule

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
    expected = app.ImageClassifier.from_pretrained(tiny_run).predict(photo)
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


def test_examples_are_images_in_the_examples_folder(tmp_path):
    sizes = {}
    for path in app.example_images():
        with Image.open(path) as image:
            sizes[Path(path).name] = (image.format, image.size)
    assert sizes == {
        "globe-flower.jpg": ("JPEG", (256, 266)),
        "lenten_rose.jpg": ("JPEG", (256, 349)),
        "silverbush.jpg": ("JPEG", (344, 256)),
        "spear_thistle.jpg": ("JPEG", (256, 352)),
    }
    for name in ("b.PNG", "a.webp", "notes.txt", "c.gif"):
        (tmp_path / name).write_bytes(b"")
    assert app.example_images(tmp_path) == [str(tmp_path / "a.webp"), str(tmp_path / "b.PNG")]  # by name, images
    assert app.example_images(tmp_path / "missing") == []


@pytest.mark.slow
def test_the_verdict_names_the_flower_or_says_unsure_below_the_stored_threshold(tiny_run):
    classifier = app.ImageClassifier.from_pretrained(tiny_run)
    classifier.unsure_threshold = 0.4  # as train.py stores it in config.json["calibration"]
    assert app.verdict(classifier, {"rose": 0.39, "daisy": 0.2}).startswith("### Not a flower I know")
    assert "*rose*" in app.verdict(classifier, {"rose": 0.39, "daisy": 0.2})
    assert app.verdict(classifier, {"daisy": 0.2, "rose": 0.4}).startswith("### rose\n40%")
    assert app.verdict(classifier, None) == ""
    classifier.unsure_threshold = None  # a model without calibration never says unsure
    assert app.verdict(classifier, {"rose": 0.05}).startswith("### rose")


def _data_url(image: Image.Image) -> dict:
    """A pasted image, as the photo component sends one: no file, a data URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"path": None, "url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}


def test_batching_and_the_time_limit_come_from_flags_or_variables(monkeypatch):
    for name in ("MAX_BATCH_SIZE", "REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    args = app.parse_args(["--model", "some/model"])
    assert (args.max_batch_size, args.request_timeout, args.max_queue) == (8, 30.0, 64)
    monkeypatch.setenv("MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("REQUEST_TIMEOUT", "2.5")
    assert (lambda a: (a.max_batch_size, a.request_timeout))(app.parse_args(["--model", "m"])) == (1, 2.5)
    args = app.parse_args(["--model", "m", "--max_batch_size", "4", "--request_timeout", "9"])
    assert (args.max_batch_size, args.request_timeout) == (4, 9.0)
    for bad in (["--max_batch_size", "0"], ["--request_timeout", "0"], ["--max_queue", "0"]):
        with pytest.raises(SystemExit):
            app.parse_args(["--model", "m", *bad])


class GatedClassifier(app.ImageClassifier):
    """The tiny run's model, recording the size of each batch it is given and of each it has answered; a batch
    waits until ``gate`` is open (it is, unless a test closes it), so that a test decides when the model is done."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.answered, self.gate = [], [], threading.Event()
        self.gate.set()

    def predict_and_score_prepared(self, inputs, top_k=5):
        self.batches.append(len(inputs))
        assert self.gate.wait(timeout=120), "the test never opened the gate"
        answers = super().predict_and_score_prepared(inputs, top_k)
        self.answered.append(len(inputs))
        return answers


@pytest.mark.slow
def test_a_batch_with_a_bad_upload_gives_its_message_and_the_others_their_answers(tiny_run):
    classifier = GatedClassifier.from_pretrained(tiny_run)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(2)]
    broken = {"path": None, "url": "data:image/png;base64,abc"}
    answers = app.classify_uploads(classifier, [_data_url(photos[0]), broken, None, _data_url(photos[1])])
    assert classifier.batches == [2]  # both photos in one forward pass
    for answer, photo in zip([answers[0], answers[3]], photos, strict=True):
        (top, score), pixels = answer.answer, answer.pixels
        expected_top, expected_score = classifier.predict_and_score(photo)
        assert list(top) == list(expected_top) and top == pytest.approx(expected_top, abs=1e-6)
        assert score == pytest.approx(expected_score, abs=1e-6)
        assert torch.equal(pixels, classifier.preprocess(photo)[None])  # the input it was classified from
    assert answers[1].answer.startswith("This pasted image is not an image that can be read")
    assert answers[2] == app.Prepared(app.NO_IMAGE)
    assert answers[1].pixels is None and answers[1].in_label


def test_recent_uploads_keep_the_newest_by_upload():
    recent = app.RecentUploads(size=2)
    for n in range(3):
        recent.put({"path": f"/tmp/gradio/{n}/photo.jpg"}, app.Prepared(({"rose": 1.0}, float(n))))
    assert recent.get({"path": "/tmp/gradio/0/photo.jpg"}) is None  # the oldest was dropped
    assert recent.get({"path": "/tmp/gradio/2/photo.jpg", "meta": {}}).answer[1] == 2.0
    assert recent.get("/tmp/gradio/1/photo.jpg").answer[1] == 1.0  # a path or its FileData: the same upload


def _counting(counts: dict[str, int], name: str, function):
    def counted(*args, **kwargs):
        counts[name] += 1
        return function(*args, **kwargs)

    return counted


@pytest.mark.parametrize("tta", [None, "flip"])
def test_one_click_decodes_and_preprocesses_the_photo_once(untrained_folder, monkeypatch, tta):
    from bench.explain import run_click  # the click as the page runs it: predict, verdict, view, why

    classifier = app.ImageClassifier.from_pretrained(untrained_folder, tta=tta)
    demo = app.build_demo(classifier)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    counts = {"decodes": 0, "preprocessings": 0}
    monkeypatch.setattr(app, "open_image", _counting(counts, "decodes", app.open_image))
    for name in ("_transform", "_views"):  # the eval pipeline, or with TTA its views (the centre crop first)
        if getattr(classifier, name) is not None:
            monkeypatch.setattr(classifier, name, _counting(counts, "preprocessings", getattr(classifier, name)))
    outputs = run_click(demo, _data_url(photo))
    assert counts == {"decodes": 1, "preprocessings": 1}  # before: 3 decodes, 4 preprocessings
    monkeypatch.undo()
    verdict, label, seen, why = (outputs[_block(demo, name)._id] for name in ("verdict", "prediction", "seen", "why"))
    top, score = classifier.predict_and_score(photo)
    assert verdict == app.verdict(classifier, top, score) and verdict.startswith("### ")
    assert list(label) == list(top) and label == pytest.approx(top, abs=1e-6)  # as predict gave it to the label
    np.testing.assert_array_equal(seen, app.enlarged(classifier.model_view(photo)))
    mapper = app.HeatMapper(classifier)
    np.testing.assert_array_equal(why, app.enlarged(mapper(photo, next(iter(top)))[1]))


def _block(demo, elem_id):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def test_the_verdict_reads_the_answer_predict_left_or_says_why_there_is_none(untrained_folder):
    classifier = app.ImageClassifier.from_pretrained(untrained_folder)
    classifier.open_set_rule = OpenSetRule("energy", threshold=2.0)  # a rule on the logits, not on the label shown
    click = app.Click(classifier, mapper=None)
    upload = _data_url(Image.new("RGB", (40, 40), (200, 30, 30)))
    top, score = classifier.predict_and_score(app.load_photo(upload))
    click.recent.put(upload, app.Prepared((top, 1.5)))
    assert click.verdict(upload).startswith("### Not one of the classes I know")
    click.recent.put(upload, app.Prepared((top, 2.5)))
    assert click.verdict(upload).startswith(f"### {next(iter(top))}\n")
    # Dropped from the recent uploads: predicted again.
    assert app.Click(classifier, mapper=None).verdict(upload) == app.verdict(classifier, top, score)
    click.recent.put(upload, app.Prepared(app.NO_IMAGE))  # a photo of a batch that was not classified
    assert click.verdict(upload) == f"### Not classified\n{app.NO_IMAGE}"
    assert click.view(upload) is None and click.why(upload) is None
    # Refused alone: predict raised the message, the label keeps the answer before, and so does the verdict.
    with pytest.raises(app.gr.Error, match="No image"):
        asyncio.run(click.predict([None]))
    assert click.verdict(None) == app.gr.skip()  # an update that changes nothing
    assert click.view(None) is None and click.why(None) is None


@pytest.fixture
def slow_demo(tiny_run, request):
    """The demo in this process on the tiny run's model, its batches held until a test opens the gate, with a queue
    of three and a time limit of 60 s (or the test's parameter); yields its URL and classifier."""
    classifier = GatedClassifier.from_pretrained(tiny_run)
    limit = getattr(request, "param", 60.0)
    demo = app.build_demo(classifier, explain=False, max_batch_size=8, request_timeout=limit)
    port = free_port()
    demo.queue(max_size=3).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", classifier=classifier)
    classifier.gate.set()
    demo.close()


def _wait_until(check, what: str, timeout: float = 60.0) -> None:
    """Poll ``check()`` until it is true; the generous deadline only stops a test that would hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def _wait_for_status(job, code: Status) -> None:
    _wait_until(lambda: job.status().code == code, f"the request reaching {code}")


@pytest.mark.slow
def test_requests_waiting_together_are_answered_by_one_forward_pass(slow_demo, photo, tmp_path):
    slow_demo.classifier.gate.clear()  # the first batch runs until the others are waiting
    client = Client(slow_demo.url, verbose=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    first = client.submit(handle_file(str(photo)), api_name="/predict")
    _wait_until(lambda: slow_demo.classifier.batches == [1], "the first batch reaching the model")
    waiting = [client.submit(handle_file(str(path)), api_name="/predict") for path in (photo, bad, photo)]
    for job in waiting:
        _wait_for_status(job, Status.IN_QUEUE)
    slow_demo.classifier.gate.set()
    results = [job.result(timeout=60) for job in (first, *waiting)]
    assert slow_demo.classifier.batches == [1, 2]  # the three that waited together: one batch, two photos in it
    expected = slow_demo.classifier.predict(photo)
    for result in (results[0], results[1], results[3]):
        assert dict(_top5(result)) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(AppError, match="not an image") as alone:  # alone, the bad photo is an error, as ever
        client.predict(handle_file(str(bad)), api_name="/predict")
    # In a batch, its message as a label without confidences, and the others answered.
    assert results[2] == {"label": alone.value.message, "confidences": None}


@pytest.mark.slow
def test_a_request_beyond_the_full_queue_is_refused_at_once(slow_demo, photo):
    slow_demo.classifier.gate.clear()  # nothing is answered until the refusal has come
    client = Client(slow_demo.url, verbose=False)
    running = client.submit(handle_file(str(photo)), api_name="/predict")
    _wait_until(lambda: slow_demo.classifier.batches == [1], "the first batch reaching the model")
    waiting = [client.submit(handle_file(str(photo)), api_name="/predict") for _ in range(3)]  # the queue's size
    for job in waiting:
        _wait_for_status(job, Status.IN_QUEUE)
    with pytest.raises(QueueError, match="Queue is full! Please try again"):
        client.submit(handle_file(str(photo)), api_name="/predict").result(timeout=60)
    # Without gradio_client: a 503 that says so (the browser's client shows "This application is currently busy.
    # Please try again.").
    refused = httpx.post(f"{slow_demo.url}gradio_api/call/predict", json={"data": [None]})
    assert refused.status_code == 503 and "Queue is full" in refused.json()["detail"]
    assert slow_demo.classifier.answered == []  # refused at once: not after a batch was done
    slow_demo.classifier.gate.set()
    assert all(len(job.result(timeout=60)["confidences"]) == 5 for job in (running, *waiting))  # all answered


@pytest.mark.slow
@pytest.mark.parametrize("slow_demo", [2.0], indirect=True)
def test_a_request_running_past_the_time_limit_is_ended_with_a_message(slow_demo, photo):
    slow_demo.classifier.gate.clear()  # the model is not done until after the limit
    client = Client(slow_demo.url, verbose=False)
    began = time.monotonic()
    with pytest.raises(AppError, match=re.escape(app.timed_out(2.0))):
        client.predict(handle_file(str(photo)), api_name="/predict")
    assert time.monotonic() - began >= 2.0  # not before the limit
    assert slow_demo.classifier.batches == [1] and slow_demo.classifier.answered == []  # nor when the model was done
    slow_demo.classifier.gate.set()  # the slow batch ends on its own; the next is answered
    _wait_until(lambda: slow_demo.classifier.answered == [1], "the slow batch ending")
    assert len(client.predict(handle_file(str(photo)), api_name="/predict")["confidences"]) == 5
