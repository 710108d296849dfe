"""Which of the 102 flowers is in a photo? A Gradio app around a model trained by ``train.py``.

    python demo/app.py --model runs/quickstart              # a run folder, served on http://127.0.0.1:7860
    python demo/app.py --model USER/NAME --port 7861        # a model on the Hugging Face Hub
    MODEL_ID=USER/NAME python demo/app.py                   # as in a Space, where MODEL_ID is a variable

The prediction is also an API endpoint, ``/predict``:

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("rose.jpg"), api_name="/predict")
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image

from flowers_hf.cli import run_cli, setup_logging
from flowers_hf.data.tta import TTA_VIEWS
from flowers_hf.errors import UnreadableImageError
from flowers_hf.images import open_image
from flowers_hf.inference import FlowerClassifier

logger = logging.getLogger("demo")

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
TOP_K = 5
VIEW_PIXELS = 224
NO_IMAGE = "No image: upload, paste or take a photo of a flower first."
NOT_UPLOADED = "Only photos uploaded to this app can be classified: upload the file itself."


def verdict(classifier: FlowerClassifier, prediction: dict[str, float] | None) -> str:
    """One line over the top 5: the flower's name, or "not a flower I know" when the calibrated top-1 probability
    lies below the model's unsure threshold (chosen on validation by ``train.py``).

    Args:
        classifier: the model, with its ``unsure_threshold``.
        prediction: flower names and probabilities (the label output), or ``None`` before any prediction.
    """
    if not prediction:
        return ""
    name, probability = max(prediction.items(), key=lambda item: item[1])
    if classifier.is_unsure(probability):
        return (
            f"### Not a flower I know\nThe best guess, *{name}*, has {probability:.0%}; this model names a flower "
            f"from {classifier.unsure_threshold:.0%}. Is it one of the {len(classifier.class_names)} species?"
        )
    return f"### {name}\n{probability:.0%} sure."


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


def build_demo(classifier: FlowerClassifier, examples: list[str] | None = None) -> gr.Blocks:
    """The app: a photo in, the five most likely flowers and the picture as the model saw it out.

    Args:
        classifier: the model with its preprocessing, loaded once and shared by every request.
        examples: image paths offered as clickable examples.
    """

    def predict(upload: dict[str, Any] | str | None) -> dict[str, float]:
        return classifier.predict(load_photo(upload), top_k=TOP_K)

    def model_view(upload: dict[str, Any] | str | None) -> np.ndarray | None:
        try:
            view = classifier.model_view(load_photo(upload))
        except gr.Error:
            return None  # predict already told the person what is wrong
        scale = max(1, VIEW_PIXELS // max(view.shape[:2]))  # small inputs enlarged, pixels kept sharp
        return view.repeat(scale, axis=0).repeat(scale, axis=1)

    height, width = classifier.prep.input_size
    with gr.Blocks(title="Flowers-102 classifier") as demo:
        gr.Markdown(
            "# Which flower is this?\n"
            f"Upload, paste or take a photo. The model knows {len(classifier.class_names)} flower species "
            "(Oxford Flowers-102) and shows its five best guesses, or says “not a flower I know” when it is unsure."
        )
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
                # The verdict above is the heading: the label's own would name a flower even when unsure.
                label = gr.Label(num_top_classes=TOP_K, label="Top 5", show_heading=False, elem_id="prediction")
                seen = gr.Image(
                    label=f"As the model saw it ({width}×{height})",
                    interactive=False,
                    height=VIEW_PIXELS,
                    elem_id="seen",
                )
        if examples:
            gr.Examples(examples=examples, inputs=image, label="Examples (click one, then Classify)")
        # Gradio's own preprocessing would open the file with PIL before we can say what is wrong with it;
        # the upload is still checked to lie in Gradio's cache.
        submit.click(predict, inputs=image, outputs=label, api_name="predict", preprocess=False).then(
            lambda prediction: verdict(classifier, prediction), inputs=label, outputs=answer, api_visibility="private"
        ).then(model_view, inputs=image, outputs=seen, api_visibility="private", preprocess=False)
        image.clear(lambda: (None, "", None), outputs=[label, answer, seen], api_visibility="private")
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
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="Address to bind; 127.0.0.1 unless GRADIO_SERVER_NAME says otherwise (as in a Space).",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="Also open a public gradio.live link.")
    parser.add_argument("--max_queue", type=int, default=64, help="Requests waiting beyond this are turned away.")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give the model: --model RUN_DIR_OR_HUB_ID, or set the MODEL_ID variable")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    classifier = FlowerClassifier.from_pretrained(args.model, device=args.device, revision=args.revision, tta=args.tta)
    demo = build_demo(classifier, example_images())
    demo.queue(max_size=args.max_queue).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size="50mb"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
