"""The demo ``bench/load.py`` loads, where it starts one: ``demo/app.py`` on a free port of this machine, serving a
run folder or an untrained model made for the run (``--make_model``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Demo:
    """A demo to load: its address, and its process where it runs here (for its memory)."""

    url: str
    pid: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_demo(model: str, flags: tuple[str, ...] = (), startup_timeout: float = 300.0) -> Iterator[Demo]:
    """``python demo/app.py --model MODEL [FLAGS]`` on a free port until the block ends; yields its URL and process.

    Args:
        model: a run folder or Hub id.
        flags: more of the demo's flags, e.g. ``("--max_batch_size", "1")``.
        startup_timeout: seconds it may take to answer.
    """
    port = free_port()
    command = [sys.executable, str(ROOT / "demo" / "app.py"), "--model", model, "--port", str(port), *flags]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_up(url, server, startup_timeout, log)
            yield Demo(url, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_up(url: str, server: subprocess.Popen, timeout: float, log: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    log.seek(0)
    raise RuntimeError(f"the demo did not start in {timeout:g} s:\n{log.read()[-4000:]}")


def make_model(architecture: str, image_size: int, folder: Path) -> Path:
    """An untrained ``architecture`` for the 102 flowers at ``image_size`` px, saved as train.py saves a model: it
    costs what a trained one does.

    Args:
        architecture: a timm model name (``resnet18``).
        image_size: its input size.
        folder: where to write it.
    """
    torch.manual_seed(0)
    model = build_model(ModelArguments(model=architecture, pretrained=False), list(FLOWER_NAMES))
    save_model(model, folder, resolve_preprocessing(model.timm_model, TransformArguments(image_size=image_size)))
    return folder
