"""The Gradio app, started as a person starts it and called through its API with gradio_client; under load, with an
injected slow model: batches, a full queue, a time limit."""

import base64
import importlib.util
import io
import re
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
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


def test_examples_are_images_in_the_examples_folder():
    examples = app.example_images()
    assert examples and all(Image.open(path).size for path in examples)


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
    assert (args.max_batch_size, args.request_timeout) == (app.MAX_BATCH_SIZE, app.REQUEST_TIMEOUT_S)
    monkeypatch.setenv("MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("REQUEST_TIMEOUT", "2.5")
    assert (lambda a: (a.max_batch_size, a.request_timeout))(app.parse_args(["--model", "m"])) == (1, 2.5)
    args = app.parse_args(["--model", "m", "--max_batch_size", "4", "--request_timeout", "9"])
    assert (args.max_batch_size, args.request_timeout) == (4, 9.0)
    for bad in (["--max_batch_size", "0"], ["--request_timeout", "0"], ["--max_queue", "0"]):
        with pytest.raises(SystemExit):
            app.parse_args(["--model", "m", *bad])


class CountingClassifier(app.ImageClassifier):
    """The tiny run's model, recording each batch it is given and taking ``delay`` seconds more over each."""

    delay = 0.0

    def predict_and_score_batch(self, images, top_k=5):
        self.batches = [*getattr(self, "batches", []), len(images)]
        time.sleep(self.delay)
        return super().predict_and_score_batch(images, top_k)


@pytest.mark.slow
def test_a_batch_with_a_bad_upload_gives_its_message_and_the_others_their_answers(tiny_run):
    classifier = CountingClassifier.from_pretrained(tiny_run)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(2)]
    broken = {"path": None, "url": "data:image/png;base64,abc"}
    answers = app.classify_uploads(classifier, [_data_url(photos[0]), broken, None, _data_url(photos[1])])
    assert classifier.batches == [2]  # both photos in one forward pass
    for answer, photo in zip([answers[0], answers[3]], photos, strict=True):
        top, score = answer
        expected_top, expected_score = classifier.predict_and_score(photo)
        assert list(top) == list(expected_top) and top == pytest.approx(expected_top, abs=1e-6)
        assert score == pytest.approx(expected_score, abs=1e-6)
    assert answers[1].startswith("This pasted image is not an image that can be read")
    assert answers[2] == app.NO_IMAGE


def test_recent_scores_keep_the_newest_by_upload():
    recent = app.RecentScores(size=2)
    for n in range(3):
        recent.put({"path": f"/tmp/gradio/{n}/photo.jpg"}, float(n))
    assert recent.get({"path": "/tmp/gradio/0/photo.jpg"}) is None  # the oldest was dropped
    assert recent.get({"path": "/tmp/gradio/2/photo.jpg", "meta": {}}) == 2.0
    assert recent.get("/tmp/gradio/1/photo.jpg") == 1.0  # a path or its FileData: the same upload


def test_the_verdict_after_an_answer_reads_the_score_it_left_or_says_why_there_is_none(untrained_folder):
    classifier = app.ImageClassifier.from_pretrained(untrained_folder)
    classifier.open_set_rule = OpenSetRule("energy", threshold=2.0)  # a rule on the logits, not on the label shown
    upload, recent = _data_url(Image.new("RGB", (40, 40), (200, 30, 30))), app.RecentScores()
    top, score = classifier.predict_and_score(app.load_photo(upload))
    shown = {"label": next(iter(top)), "confidences": [{"label": k, "confidence": v} for k, v in top.items()]}
    recent.put(upload, 1.5)
    assert app.shown_verdict(classifier, recent, upload, shown).startswith("### Not one of the classes I know")
    recent.put(upload, 2.5)
    assert app.shown_verdict(classifier, recent, upload, shown).startswith(f"### {next(iter(top))}\n")
    # Dropped from the recent scores: computed again.
    assert app.shown_verdict(classifier, app.RecentScores(), upload, shown) == app.verdict(classifier, top, score)
    unread = {"label": app.NO_IMAGE, "confidences": None}  # a photo of a batch that was not classified
    assert app.shown_verdict(classifier, recent, None, unread) == f"### Not classified\n{app.NO_IMAGE}"
    assert app.shown_verdict(classifier, recent, None, {}) == ""  # cleared


@pytest.fixture
def slow_demo(tiny_run):
    """The demo in this process on the tiny run's model, slowed by ``delay`` s a batch, with a queue of three and a
    two-second time limit; yields its URL and classifier."""
    classifier = CountingClassifier.from_pretrained(tiny_run)
    demo = app.build_demo(classifier, explain=False, max_batch_size=8, request_timeout=2.0)
    port = free_port()
    demo.queue(max_size=3).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", classifier=classifier)
    demo.close()


def _wait_until(job, code: Status, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while job.status().code != code:
        assert time.monotonic() < deadline, f"the request never reached {code}, it is {job.status().code}"
        time.sleep(0.02)


@pytest.mark.slow
def test_requests_waiting_together_are_answered_by_one_forward_pass(slow_demo, photo, tmp_path):
    slow_demo.classifier.delay = 1.0
    client = Client(slow_demo.url, verbose=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    first = client.submit(handle_file(str(photo)), api_name="/predict")
    _wait_until(first, Status.PROCESSING)
    waiting = [client.submit(handle_file(str(path)), api_name="/predict") for path in (photo, bad, photo)]
    for job in waiting:
        _wait_until(job, Status.IN_QUEUE)
    results = [job.result(timeout=30) for job in (first, *waiting)]
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
    slow_demo.classifier.delay = 1.5
    client = Client(slow_demo.url, verbose=False)
    running = client.submit(handle_file(str(photo)), api_name="/predict")
    _wait_until(running, Status.PROCESSING)
    waiting = [client.submit(handle_file(str(photo)), api_name="/predict") for _ in range(3)]  # the queue's size
    for job in waiting:
        _wait_until(job, Status.IN_QUEUE)
    began = time.monotonic()
    with pytest.raises(QueueError, match="Queue is full! Please try again"):
        client.predict(handle_file(str(photo)), api_name="/predict")
    assert time.monotonic() - began < 1.0  # refused, not left waiting
    # Without gradio_client: a 503 that says so (the browser's client shows "This application is currently busy.
    # Please try again.").
    refused = httpx.post(f"{slow_demo.url}gradio_api/call/predict", json={"data": [None]})
    assert refused.status_code == 503 and "Queue is full" in refused.json()["detail"]
    assert all(len(job.result(timeout=30)["confidences"]) == 5 for job in (running, *waiting))  # all answered


@pytest.mark.slow
def test_a_request_running_past_the_time_limit_is_ended_with_a_message(slow_demo, photo):
    slow_demo.classifier.delay = 3.0  # beyond the fixture's two-second limit
    client = Client(slow_demo.url, verbose=False)
    began = time.monotonic()
    with pytest.raises(AppError, match=re.escape(app.timed_out(2.0))):
        client.predict(handle_file(str(photo)), api_name="/predict")
    assert 2.0 <= time.monotonic() - began < 3.5  # at the limit, not when the model is done
    slow_demo.classifier.delay = 0.0
    time.sleep(1.5)  # the slow batch ends on its own; the next is answered
    assert len(client.predict(handle_file(str(photo)), api_name="/predict")["confidences"]) == 5
