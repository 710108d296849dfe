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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image

from flowers_hf.core.cli import run_cli, setup_logging
from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data.images import open_image
from flowers_hf.data.tta import TTA_VIEWS
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.explain import HeatMapper, heat_mapper
from flowers_hf.serving.memory import hand_back_large_buffers
from flowers_hf.serving.onnx_backend import BACKENDS
from flowers_hf.serving.recent import Recent
from flowers_hf.serving.run import load_run
from flowers_hf.serving.wording import heading, verdict

logger = logging.getLogger("demo")

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
TOP_K = 5
VIEW_PIXELS = 224
NO_IMAGE = "No image: upload, paste or take a photo first."
NOT_UPLOADED = "Only photos uploaded to this app can be classified: upload the file itself."
MAX_BATCH_SIZE = 8
REQUEST_TIMEOUT_S = 30.0
RECENT_UPLOADS = 64  # uploads whose input and answer the events after predict can still find

Upload = dict[str, Any] | str | None  # the image component's raw value
Answer = tuple[dict[str, float], float] | str  # the top 5 and the score, or why the photo was not classified
T = TypeVar("T")


def load_photo(upload: dict[str, Any] | str | None, resize_to: int | None = None) -> Image.Image:
    """Open an uploaded file as an RGB photo, or raise a ``gr.Error`` the person can act on.

    Args:
        upload: the image component's raw value: a file in Gradio's upload folder, as a dict or a path.
        resize_to: the model's eval resize (``ImageClassifier.resize_side``): a large photo is decoded and reduced
            only down to twice that (``open_image``); ``None``: shrunk to at most 1024 px.
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
        return open_image(upload, resize_to=resize_to)
    except UnreadableImageError as error:
        raise gr.Error(str(error)) from error


def _inline_image(url: str) -> io.BytesIO:
    """The bytes of a ``data:`` URL, as a pasted image may come."""
    try:
        return io.BytesIO(base64.b64decode(url.partition(",")[2]))
    except binascii.Error as error:
        raise gr.Error(f"This pasted image is not an image that can be read ({error}).") from error


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


class Prepared(NamedTuple):
    """One upload as :func:`classify_uploads` left it, for the events of its click that follow the answer.

    Attributes:
        answer: the top 5 and the score, or why the photo was not classified.
        pixels: the model's input, the centre crop (``ImageClassifier.prepare``); ``None`` where the photo did not open.
        in_label: whether the label shows ``answer``: ``False`` for a request refused alone (an error, and the label
            keeps the answer before it).
    """

    answer: Answer
    pixels: torch.Tensor | None = None
    in_label: bool = True


class RecentUploads:
    """The last uploads predicted, by upload (a path or its FileData: the same): what the verdict, the model's view
    and the heat map of a click read, so that it decodes and preprocesses its photo once. A batched event cannot
    hand them on in a ``gr.State``: Gradio 6.31 writes the state outputs of a whole batch into the session of its
    first request. At 224 px, 0.6 MB each."""

    def __init__(self, size: int = RECENT_UPLOADS) -> None:
        self._recent: Recent[Prepared] = Recent(size)

    def put(self, upload: Upload, entry: Prepared) -> Prepared:
        return self._recent.put(_upload_key(upload), entry)

    def get(self, upload: Upload) -> Prepared | None:
        return self._recent.get(_upload_key(upload))


def _upload_key(upload: Upload) -> str:
    """A digest of where the upload lies (its path in Gradio's cache) or of a pasted image's data URL."""
    if isinstance(upload, dict):
        upload = upload.get("path") or upload.get("url")
    return hashlib.sha256(str(upload).encode()).hexdigest()


def classify_uploads(classifier: ImageClassifier, uploads: Sequence[Upload], top_k: int = TOP_K) -> list[Prepared]:
    """Each upload's top ``top_k`` and score under the unsure rule, with the input they came from, from one forward
    pass over the photos that open; for one that does not, the message :func:`load_photo` gives. Each photo is
    decoded once and preprocessed once.

    Args:
        classifier: the model.
        uploads: the image component's raw values, one per request of the batch.
        top_k: how many classes to return for each.
    """
    opened: list[torch.Tensor | Prepared] = []
    for upload in uploads:
        try:
            opened.append(classifier.prepare(load_photo(upload, classifier.resize_side)))
        except gr.Error as error:
            # One line for the log, not a traceback: the file was at fault, not the demo. A bug still raises.
            logger.warning("refused an upload (%s): %s", _upload_name(upload), error.message)
            opened.append(Prepared(error.message))
    inputs = [entry for entry in opened if isinstance(entry, torch.Tensor)]
    answers = iter(classifier.predict_and_score_prepared(inputs, top_k))
    # With TTA, only the centre crop is kept (a copy, not the views' storage): the view and the heat map show it.
    return [entry if isinstance(entry, Prepared) else Prepared(next(answers), _centre(entry)) for entry in opened]


def _upload_name(upload: Upload) -> str:
    """What the log calls an upload: its file name (Gradio keeps the one it was sent with)."""
    if isinstance(upload, dict):
        upload = upload.get("path") or ("a pasted image" if upload.get("url") else None)
    return Path(upload).name if upload else "no image"


def _centre(prepared: torch.Tensor) -> torch.Tensor:
    return prepared if len(prepared) == 1 else prepared[:1].clone()


def enlarged(view: np.ndarray) -> np.ndarray:
    """Small model inputs shown at least ``VIEW_PIXELS`` wide by a whole factor, pixels kept sharp."""
    scale = max(1, VIEW_PIXELS // max(view.shape[:2]))
    return view.repeat(scale, axis=0).repeat(scale, axis=1)


class Click:
    """What one click on Classify runs, in order: :meth:`predict` (batched; the ``/predict`` endpoint), then
    :meth:`verdict`, :meth:`view` and :meth:`why`, which read the input and the answer predict left in ``recent``.

    Args:
        classifier: the model with its preprocessing, shared by every request.
        mapper: the heat maps of its answers, or ``None`` without the "why" view.
        request_timeout: seconds a batch may run before its requests are told to try again.
    """

    def __init__(
        self, classifier: ImageClassifier, mapper: HeatMapper | None, request_timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.classifier, self.mapper, self.request_timeout = classifier, mapper, request_timeout
        self.recent = RecentUploads()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")  # one batch at a time

    async def predict(self, uploads: Sequence[Upload]) -> tuple[list[dict[str, float] | str]]:
        """The top 5 of each upload (Gradio's batch function: one list in, one list per output out)."""
        try:
            entries = await within(self.request_timeout, self.worker, classify_uploads, self.classifier, uploads)
        except gr.Error as error:  # timed out: the label keeps the answer before
            for upload in uploads:
                self.recent.put(upload, Prepared(error.message, in_label=False))
            raise
        if len(entries) == 1 and isinstance(entries[0].answer, str):
            self.recent.put(uploads[0], entries[0]._replace(in_label=False))
            # Alone: the message in the page, an error from the API, as ever; logged above in one line.
            raise gr.Error(entries[0].answer, print_exception=False)
        for upload, entry in zip(uploads, entries, strict=True):
            self.recent.put(upload, entry)
        return ([entry.answer if isinstance(entry.answer, str) else entry.answer[0] for entry in entries],)

    def prepared(self, upload: Upload) -> Prepared:
        """What predict left for ``upload``; predicted again where it has been dropped since (a long queue)."""
        entry = self.recent.get(upload)
        if entry is None:
            (entry,) = classify_uploads(self.classifier, [upload])
            entry = self.recent.put(upload, entry if entry.pixels is not None else entry._replace(in_label=False))
        return entry

    def verdict(self, upload: Upload) -> str | dict[str, Any]:
        """The line over the label: :func:`verdict` of the stored answer, or the message of a photo of a batch that
        was not classified; left as it is after a refusal (the label still shows the answer before)."""
        entry = self.prepared(upload)
        if not entry.in_label:
            return gr.skip()
        if isinstance(entry.answer, str):
            return f"### Not classified\n{entry.answer}"
        return verdict(self.classifier, *entry.answer)

    def view(self, upload: Upload) -> np.ndarray | None:
        """The photo as the model saw it, or ``None`` where it did not open (predict said why)."""
        entry = self.prepared(upload)
        return None if entry.pixels is None else enlarged(self.classifier.model_view(entry.pixels))

    def why(self, upload: Upload) -> np.ndarray | None:
        """The model's view with the Grad-CAM heat map of the top class shown over it, or ``None`` with nothing
        to explain."""
        entry = self.prepared(upload)
        if self.mapper is None or entry.pixels is None:
            return None
        return enlarged(self.mapper(entry.pixels, next(iter(entry.answer[0])))[1])


class Page(NamedTuple):
    """The components a click reads and writes."""

    image: gr.Image
    submit: gr.Button
    answer: gr.Markdown
    label: gr.Label
    seen: gr.Image
    why: gr.Image


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
    click = Click(classifier, heat_mapper(classifier) if explain else None, request_timeout)
    title, text = heading(classifier)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(text, elem_id="description")
        with gr.Row():
            image, submit = _photo_column()
            page = Page(image, submit, *_answer_column(classifier, explained=click.mapper is not None))
        if examples:
            gr.Examples(examples=examples, inputs=image, label="Examples (click one, then Classify)")
        _wire(click, page, max_batch_size)
    return demo


def _photo_column() -> tuple[gr.Image, gr.Button]:
    with gr.Column():
        image = gr.Image(
            type="filepath", sources=["upload", "clipboard", "webcam"], label="Photo", height=360, elem_id="photo"
        )
        submit = gr.Button("Classify", variant="primary", elem_id="classify")
    return image, submit


def _answer_column(classifier: ImageClassifier, explained: bool) -> tuple[gr.Markdown, gr.Label, gr.Image, gr.Image]:
    height, width = classifier.prep.input_size
    with gr.Column():
        answer = gr.Markdown(elem_id="verdict")
        # The verdict above is the heading: the label's own would name a class even when unsure.
        label = gr.Label(num_top_classes=TOP_K, label="Top 5", show_heading=False, elem_id="prediction")
        seen = gr.Image(
            label=f"As the model saw it ({width}×{height})", interactive=False, height=VIEW_PIXELS, elem_id="seen"
        )
        why = gr.Image(
            label="Why: where it found the top class (Grad-CAM; red: most)",
            interactive=False,
            height=VIEW_PIXELS,
            visible=explained,
            elem_id="why",
        )
    return answer, label, seen, why


def _wire(click: Click, page: Page, max_batch_size: int) -> None:
    """Classify: the batched prediction, then the verdict, the model's view and (after it) the heat map, which
    read what the prediction left; clearing the photo clears them."""
    # Gradio's own preprocessing would open the file with PIL before we can say what is wrong with it;
    # the upload is still checked to lie in Gradio's cache.
    private = {"inputs": page.image, "api_visibility": "private", "preprocess": False}
    shown = (
        page.submit.click(
            click.predict, inputs=page.image, outputs=page.label, api_name="predict", preprocess=False,
            batch=True, max_batch_size=max_batch_size,
        )
        .then(click.verdict, outputs=page.answer, **private)
        .then(click.view, outputs=page.seen, **private)
    )  # fmt: skip
    if click.mapper is not None:  # after the answer is shown: the heat map does not delay it
        shown.then(click.why, outputs=page.why, **private)
    page.image.clear(
        lambda: (None, "", None, None), outputs=[page.label, page.answer, page.seen, page.why], api_visibility="private"
    )


def example_images(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The images in ``demo/examples`` (drop your own photos there), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_options(parser)
    _server_options(parser)
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


def _model_options(parser: argparse.ArgumentParser) -> None:
    """Which model, where it runs, and what the page shows of it."""
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


def _server_options(parser: argparse.ArgumentParser) -> None:
    """Where the app listens, and how many requests it takes on."""
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="Address to bind; 127.0.0.1 unless GRADIO_SERVER_NAME says otherwise (as in a Space).",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="Also open a public gradio.live link.")
    parser.add_argument("--max_queue", type=int, default=64, help="Requests waiting beyond this are turned away.")
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


def _env_flag(name: str) -> bool | None:
    """A yes/no variable (``1``, ``true``, ``0``, ``false``, …), or ``None`` when unset."""
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value not in ("0", "false", "no", "off")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    hand_back_large_buffers()
    run = load_run(args.model, device=args.device, revision=args.revision, tta=args.tta, backend=args.backend)
    classifier = run.classifier
    demo = build_demo(classifier, example_images(), args.explain, args.max_batch_size, args.request_timeout)
    demo.queue(max_size=args.max_queue).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size="50mb"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
