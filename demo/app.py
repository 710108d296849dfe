"""Which of its classes is in a photo? A Gradio app around a model trained by ``train.py`` (Flowers-102 by default);
every word it shows about the classes comes from the model's config (the data set it recorded, its class names).

    python demo/app.py --model runs/quickstart              # a run folder, served on http://127.0.0.1:7860
    python demo/app.py --model USER/NAME --port 7861        # a model on the Hugging Face Hub
    MODEL_ID=USER/NAME python demo/app.py                   # as in a Space, where MODEL_ID is a variable
    python demo/app.py --model runs/quickstart --backend onnx-int8   # its int8 export (python -m flowers_hf.export)
    python demo/app.py --model runs/quickstart --max_batch_size 1    # one photo per forward pass (default: up to 8)

The prediction is also an API endpoint, ``/predict``:

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("rose.jpg"), api_name="/predict")

Requests that wait together (up to ``--max_batch_size``) are answered by one forward pass. A photo that cannot be
classified gets its message as an error, or, in a batch with others, as a label without confidences
(``{"label": message, "confidences": None}``), so that the others are answered. Beyond ``--max_queue`` waiting
requests, a request is refused at once (gradio_client: ``QueueError``); a batch still running after
``--request_timeout`` seconds ends its requests with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import io
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image

from flowers_hf.core.cli import run_cli, setup_logging
from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.images import open_image
from flowers_hf.data.tta import TTA_VIEWS
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.explain import HeatMapper, heat_mapper
from flowers_hf.serving.onnx_backend import BACKENDS
from flowers_hf.serving.open_set import SCORE_NAMES

logger = logging.getLogger("demo")

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
TOP_K = 5
VIEW_PIXELS = 224
NO_IMAGE = "No image: upload, paste or take a photo first."
NOT_UPLOADED = "Only photos uploaded to this app can be classified: upload the file itself."
MAX_BATCH_SIZE = 8
REQUEST_TIMEOUT_S = 30.0
RECENT_SCORES = 1024  # uploads whose score the verdict can still find

Upload = dict[str, Any] | str | None  # the image component's raw value
Answer = tuple[dict[str, float], float] | str  # the top 5 and the score, or why the photo was not classified
T = TypeVar("T")


def subject(classifier: ImageClassifier) -> str | None:
    """What one image of the model's data set shows ("flower"), or ``None`` where its data set did not say."""
    return classifier.dataset.subject if classifier.dataset is not None else None


def unsure_words(classifier: ImageClassifier) -> str:
    """'Not a flower I know', or for a data set without a subject 'Not one of the classes I know'."""
    noun = subject(classifier)
    return f"Not a {noun} I know" if noun else "Not one of the classes I know"


def verdict(classifier: ImageClassifier, prediction: dict[str, float] | None, score: float | None = None) -> str:
    """One line over the top 5: the class's name, or "not a flower I know" (in the data set's words) below the
    model's unsure rule: the score and threshold that ``python -m flowers_hf.evaluate --ood`` recommended, where
    ``config.json`` stores them, else the calibrated top-1 probability below the unsure threshold (``train.py``).

    Args:
        classifier: the model, with its unsure rule and data set.
        prediction: class names and probabilities (the label output), or ``None`` before any prediction.
        score: the photo's score under the rule (``ImageClassifier.predict_and_score``); a rule on the logits
            needs it.
    """
    if not prediction:
        return ""
    name, probability = max(prediction.items(), key=lambda item: item[1])
    if classifier.is_unsure(probability, score):
        rule = classifier.unsure_rule
        below = (
            f"this model names a class from {rule.threshold:.0%}"
            if rule.score == "msp"
            else f"its {SCORE_NAMES[rule.score]}, {score:.2f}, lies below {rule.threshold:.2f}, where it names a class"
        )
        return (
            f"### {unsure_words(classifier)}\nThe best guess, *{name}*, has {probability:.0%}; {below}. Is it one of "
            f"the {len(classifier.class_names)} classes?"
        )
    return f"### {name}\n{probability:.0%} sure."


def heading(classifier: ImageClassifier) -> tuple[str, str]:
    """The page's title and its first lines, in the words of the model's data set."""
    noun, dataset = subject(classifier), classifier.dataset
    name = dataset.name if dataset is not None else None  # "Oxford Flowers-102", "beans", a folder's name
    title = f"{_short_name(dataset) or 'Image'} classifier"
    question = f"Which {noun} is this?" if noun else "What is in this photo?"
    known = f"{len(classifier.class_names)} classes" + (f" of {name}" if name else "")
    text = (
        f"# {question}\nUpload, paste or take a photo. The model knows {known} and shows its five best guesses, or "
        f"says “{unsure_words(classifier).lower()}” when it is unsure."
    )
    return title, text


def _short_name(dataset: DatasetIdentity | None) -> str | None:
    if dataset is None:
        return None
    if dataset.flowers102:
        return "Flowers-102"
    return "Synthetic flowers" if dataset.synthetic else dataset.name


def load_photo(upload: dict[str, Any] | str | None) -> Image.Image:
    """Open an uploaded file as an RGB photo, or raise a ``gr.Error`` the person can act on.

    Args:
        upload: the image component's raw value: a file in Gradio's upload folder, as a dict or a path.
    """
    if isinstance(upload, dict):
        url = upload.get("url") or ""
        upload = upload.get("path") or (_inline_image(url) if url.startswith("data:") else None)
    if upload is None:
        raise gr.Error(NO_IMAGE)
    # Gradio 6.31 checks that a path lies in its upload folder only when the dict has FileData's "meta": without
    # it, an API call could name any image on the server.
    if isinstance(upload, str) and not is_in_or_equal(upload, get_upload_folder()):
        raise gr.Error(NOT_UPLOADED)
    try:
        return open_image(upload)
    except UnreadableImageError as error:
        raise gr.Error(str(error)) from error


def _inline_image(url: str) -> io.BytesIO:
    """The bytes of a ``data:`` URL, as a pasted image may come."""
    try:
        return io.BytesIO(base64.b64decode(url.partition(",")[2]))
    except binascii.Error as error:
        raise gr.Error(f"This pasted image is not an image that can be read ({error}).") from error


def classify_uploads(classifier: ImageClassifier, uploads: Sequence[Upload], top_k: int = TOP_K) -> list[Answer]:
    """Each upload's top ``top_k`` and score under the unsure rule, from one forward pass over the photos that open;
    for one that does not, the message :func:`load_photo` gives.

    Args:
        classifier: the model.
        uploads: the image component's raw values, one per request of the batch.
        top_k: how many classes to return for each.
    """
    answers: list[Answer] = [""] * len(uploads)
    photos: dict[int, Image.Image] = {}
    for index, upload in enumerate(uploads):
        try:
            photos[index] = load_photo(upload)
        except gr.Error as error:
            answers[index] = error.message
    for index, answer in zip(photos, classifier.predict_and_score_batch(list(photos.values()), top_k), strict=True):
        answers[index] = answer
    return answers


def timed_out(limit: float) -> str:
    """The message of a request that got no answer within ``limit`` seconds."""
    return f"No answer within {limit:g} s: the demo is too busy right now. Try again in a moment."


async def within(limit: float, worker: Executor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``worker``, or a ``gr.Error`` saying so once it has taken ``limit`` seconds.

    A forward pass cannot be interrupted: the work goes on to its end, with nobody waiting for it, and the next batch
    queues behind it on ``worker``.

    Args:
        limit: seconds to wait.
        worker: where ``fn`` runs.
        fn: the work, with its ``args``.
    """
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(worker, fn, *args), limit)
    except TimeoutError:
        logger.warning("a batch ran longer than %g s; its requests were told to try again", limit)
        raise gr.Error(timed_out(limit), print_exception=False) from None


class RecentScores:
    """The unsure-rule scores of the last photos predicted, by upload, for the verdict that follows the answer.

    A batched event cannot hand them on in a ``gr.State``: Gradio 6.31 writes the state outputs of a whole batch
    into the session of its first request.

    Args:
        size: how many to keep, the newest.
    """

    def __init__(self, size: int = RECENT_SCORES) -> None:
        self._scores: OrderedDict[str, float] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # the verdicts read in Gradio's worker threads

    def put(self, upload: Upload, score: float) -> None:
        key = _upload_key(upload)
        with self._lock:
            self._scores[key] = score
            self._scores.move_to_end(key)
            while len(self._scores) > self._size:
                self._scores.popitem(last=False)

    def get(self, upload: Upload) -> float | None:
        with self._lock:
            return self._scores.get(_upload_key(upload))


def _upload_key(upload: Upload) -> str:
    """A digest of where the upload lies (its path in Gradio's cache) or of a pasted image's data URL."""
    if isinstance(upload, dict):
        upload = upload.get("path") or upload.get("url")
    return hashlib.sha256(str(upload).encode()).hexdigest()


def shown_prediction(value: Any) -> dict[str, float] | str | None:
    """The label component's raw value as :func:`classify_uploads` answered: class names and probabilities, the
    message of a photo that was not classified (a label without confidences), or ``None`` before any answer."""
    if not isinstance(value, dict) or not value.get("label"):
        return None
    if value.get("confidences") is None:
        return str(value["label"])
    return {entry["label"]: entry["confidence"] for entry in value["confidences"]}


def shown_verdict(classifier: ImageClassifier, recent: RecentScores, upload: Upload, shown: Any) -> str:
    """The verdict over the label the page shows: :func:`verdict`, or for a photo that was not classified its message.

    Args:
        classifier: the model, with its unsure rule.
        recent: the scores :func:`build_demo`'s predictions left, for a rule on the logits.
        upload: the image component's raw value.
        shown: the label component's raw value.
    """
    prediction = shown_prediction(shown)
    if isinstance(prediction, str):
        return f"### Not classified\n{prediction}"
    rule = classifier.unsure_rule
    if not prediction or rule is None or rule.score == "msp":
        return verdict(classifier, prediction)  # the score is the top probability shown
    score = recent.get(upload)
    if score is None:  # predicted too long ago: its score has been dropped
        score = classifier.predict_and_score(load_photo(upload), top_k=TOP_K)[1]
    return verdict(classifier, prediction, score)


def enlarged(view: np.ndarray) -> np.ndarray:
    """Small model inputs shown at least ``VIEW_PIXELS`` wide by a whole factor, pixels kept sharp."""
    scale = max(1, VIEW_PIXELS // max(view.shape[:2]))
    return view.repeat(scale, axis=0).repeat(scale, axis=1)


def why_view(mapper: HeatMapper, upload: dict[str, Any] | str | None, prediction: Any) -> np.ndarray | None:
    """The model's view of the photo with the Grad-CAM heat map of its top class over it, or ``None`` when there
    is no prediction to explain.

    Args:
        mapper: the heat maps of the demo's classifier.
        upload: the image component's raw value.
        prediction: the label component's raw value (``{"label": top class, "confidences": …}``).
    """
    classified = isinstance(prediction, dict) and prediction.get("confidences") is not None
    top = prediction.get("label") if classified else None
    if not top:  # no answer, or a photo that was not classified
        return None
    try:
        photo = load_photo(upload)
    except gr.Error:
        return None  # predict already told the person what is wrong
    return enlarged(mapper(photo, top)[1])


def build_demo(
    classifier: ImageClassifier,
    examples: list[str] | None = None,
    explain: bool = True,
    max_batch_size: int = MAX_BATCH_SIZE,
    request_timeout: float = REQUEST_TIMEOUT_S,
) -> gr.Blocks:
    """The app: a photo in, the five most likely classes and the picture as the model saw it out (with
    ``explain``, also where in it the model found its top class).

    Args:
        classifier: the model with its preprocessing, loaded once and shared by every request.
        examples: image paths offered as clickable examples.
        explain: show the Grad-CAM heat map of the top class (``flowers_hf.serving.explain``), where the model
            has one; it takes about 1.3 times the prediction's time, after the answer is shown (README, "Demo").
        max_batch_size: at most this many waiting requests are answered by one forward pass.
        request_timeout: seconds a batch may run before its requests are told to try again.
    """
    mapper = heat_mapper(classifier) if explain else None
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")  # one batch at a time on the model
    recent = RecentScores()

    async def predict(uploads: Sequence[Upload]) -> tuple[list[dict[str, float] | str]]:
        answers = await within(request_timeout, worker, classify_uploads, classifier, uploads)
        if len(answers) == 1 and isinstance(answers[0], str):
            raise gr.Error(answers[0])  # alone: the message in the page, an error from the API, as ever
        for upload, answer in zip(uploads, answers, strict=True):
            if not isinstance(answer, str):
                recent.put(upload, answer[1])
        return ([answer if isinstance(answer, str) else answer[0] for answer in answers],)

    def model_view(upload: dict[str, Any] | str | None) -> np.ndarray | None:
        try:
            view = classifier.model_view(load_photo(upload))
        except gr.Error:
            return None  # predict already told the person what is wrong
        return enlarged(view)

    height, width = classifier.prep.input_size
    title, text = heading(classifier)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(text)
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath",
                    sources=["upload", "clipboard", "webcam"],
                    label="Photo",
                    height=360,
                    elem_id="photo",
                )
                submit = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                answer = gr.Markdown(elem_id="verdict")
                # The verdict above is the heading: the label's own would name a class even when unsure.
                label = gr.Label(num_top_classes=TOP_K, label="Top 5", show_heading=False, elem_id="prediction")
                seen = gr.Image(
                    label=f"As the model saw it ({width}×{height})",
                    interactive=False,
                    height=VIEW_PIXELS,
                    elem_id="seen",
                )
                why = gr.Image(
                    label="Why: where it found the top class (Grad-CAM; red: most)",
                    interactive=False,
                    height=VIEW_PIXELS,
                    visible=mapper is not None,
                    elem_id="why",
                )
        if examples:
            gr.Examples(examples=examples, inputs=image, label="Examples (click one, then Classify)")
        # Gradio's own preprocessing would open the file with PIL before we can say what is wrong with it;
        # the upload is still checked to lie in Gradio's cache.
        shown = (
            submit.click(
                predict, inputs=image, outputs=label, api_name="predict", preprocess=False,
                batch=True, max_batch_size=max_batch_size,
            )
            .then(
                lambda upload, shown: shown_verdict(classifier, recent, upload, shown),
                inputs=[image, label], outputs=answer, api_visibility="private", preprocess=False,
            )
            .then(model_view, inputs=image, outputs=seen, api_visibility="private", preprocess=False)
        )  # fmt: skip
        if mapper is not None:  # after the answer is shown: the heat map does not delay it
            shown.then(
                lambda upload, prediction: why_view(mapper, upload, prediction),
                inputs=[image, label], outputs=why, api_visibility="private", preprocess=False,
            )  # fmt: skip
        image.clear(lambda: (None, "", None, None), outputs=[label, answer, seen, why], api_visibility="private")
    return demo


def example_images(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The images in ``demo/examples`` (drop your own photos there), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL_ID"),
        help="A run folder written by train.py or a Hub model id (default: the MODEL_ID variable).",
    )
    parser.add_argument("--revision", default=os.environ.get("MODEL_REVISION"), help="Hub branch, tag or commit.")
    parser.add_argument("--device", default="cpu", help="Where inference runs (cpu, cuda, ...).")
    parser.add_argument(
        "--tta",
        choices=list(TTA_VIEWS),
        default=os.environ.get("TTA") or None,
        help="Test-time augmentation: average the views' probabilities (flowers_hf.evaluate --tta reports the "
        "accuracy gain and the latency cost); default none, or the TTA variable.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("BACKEND") or "pytorch",
        help="What runs the model: pytorch, or its ONNX export (onnx, onnx-int8: faster on a CPU; written by python "
        "-m flowers_hf.export), with the same preprocessing; default pytorch, or the BACKEND variable.",
    )
    parser.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("EXPLAIN"),
        help="Show a Grad-CAM heat map of the top class over the model's view, after the answer (about 1.3 times "
        "the prediction's time: README, Demo); default: the EXPLAIN variable (1 or 0), else on for the pytorch "
        "backend.",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="Address to bind; 127.0.0.1 unless GRADIO_SERVER_NAME says otherwise (as in a Space).",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="Also open a public gradio.live link.")
    parser.add_argument(
        "--max_queue", type=int, default=64, help="Requests waiting beyond this are turned away at once."
    )
    parser.add_argument(
        "--max_batch_size",
        type=int,
        default=int(os.environ.get("MAX_BATCH_SIZE") or MAX_BATCH_SIZE),
        help="Up to this many requests waiting together are answered by one forward pass (1: one at a time); "
        f"default {MAX_BATCH_SIZE}, or the MAX_BATCH_SIZE variable.",
    )
    parser.add_argument(
        "--request_timeout",
        type=float,
        default=float(os.environ.get("REQUEST_TIMEOUT") or REQUEST_TIMEOUT_S),
        help="Seconds a batch may run before its requests are told to try again; default "
        f"{REQUEST_TIMEOUT_S:g}, or the REQUEST_TIMEOUT variable.",
    )
    args = parser.parse_args(argv)
    if args.max_batch_size < 1 or args.max_queue < 1 or args.request_timeout <= 0:
        parser.error("--max_batch_size and --max_queue must be at least 1, --request_timeout above 0")
    if not args.model:
        parser.error("give the model: --model RUN_DIR_OR_HUB_ID, or set the MODEL_ID variable")
    if args.explain is None:  # asked for neither way: wherever Grad-CAM can run
        args.explain = args.backend == "pytorch"
    if args.explain and args.backend != "pytorch":
        parser.error(f"--explain needs the pytorch backend (Grad-CAM takes gradients), not {args.backend}")
    return args


def _env_flag(name: str) -> bool | None:
    """A yes/no variable (``1``, ``true``, ``0``, ``false``, …), or ``None`` when unset."""
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value not in ("0", "false", "no", "off")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    classifier = ImageClassifier.from_pretrained(
        args.model, device=args.device, revision=args.revision, tta=args.tta, backend=args.backend
    )
    demo = build_demo(classifier, example_images(), args.explain, args.max_batch_size, args.request_timeout)
    demo.queue(max_size=args.max_queue).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size="50mb"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
