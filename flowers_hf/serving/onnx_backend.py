"""An exported model (``python -m flowers_hf.export``) served by ONNX Runtime on the CPU, called as the PyTorch model
is: ``model(pixel_values).logits``, with the run's ``config`` (classes, preprocessing, calibration) beside it.

The files live in the run folder's ``onnx/`` (so also in a Hub repo pushed from it): ``model.onnx`` (fp32),
``model_int8.onnx`` and ``export.json``, the record of what they were made from and how.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from transformers import AutoConfig, PretrainedConfig
from transformers.modeling_outputs import ImageClassifierOutput

from flowers_hf.core.errors import ArgumentError, MissingFileError
from flowers_hf.core.hub import is_hub_id

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
RECORD_FILE = "export.json"
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"
# ImageClassifier's backends and the file each one serves; "pytorch" is the model.safetensors of the run itself.
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
BACKENDS = ("pytorch", *ONNX_FILES)
PROVIDERS = ["CPUExecutionProvider"]


class OnnxModel:
    """An ONNX Runtime session on the CPU that takes and returns what ``TimmWrapperForImageClassification`` does.

    Args:
        path: the ``.onnx`` file (input ``pixel_values`` ``(batch, 3, H, W)``, output ``logits``).
        config: the run's ``config.json`` as transformers reads it.
        threads: intra-op threads; ``None``: one per physical core.
    """

    def __init__(self, path: str | Path, config: PretrainedConfig, threads: int | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=PROVIDERS)

    def __call__(self, pixel_values: torch.Tensor) -> ImageClassifierOutput:
        batch = np.ascontiguousarray(pixel_values.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return ImageClassifierOutput(logits=torch.from_numpy(logits))


def session_options(threads: int | None = None, spinning: bool = False) -> ort.SessionOptions:
    """How the served models run: ``threads`` intra-op threads (default one per physical core), operators one after
    another, every graph optimisation, threads that sleep between runs. The batch dimension stays dynamic: fixing it
    at 1 (a static-shape graph) made the int8 click no faster (docs/serving.md, "Large photos and where the
    milliseconds go").

    Args:
        threads: intra-op threads; ``None``: the physical cores.
        spinning: let the threads busy-wait for work (ONNX Runtime's default), for comparison only.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a ResNet's graph is a chain: nothing to overlap
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads busy-wait after each run by default: on a few cores that starves the decoding and
    # resizing of the next photo (and any PyTorch model in the same process) of the CPU they share.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def load_onnx_model(source: str | Path, backend: str, revision: str | None = None) -> OnnxModel:
    """The exported model of a run folder or Hub repo for ``backend`` (``onnx`` or ``onnx-int8``).

    Args:
        source: a run folder with ``onnx/``, or ``owner/name`` on the Hub.
        backend: a key of ``ONNX_FILES``.
        revision: the Hub branch, tag or commit.
    """
    if backend not in ONNX_FILES:
        raise ArgumentError(f"backend {backend!r} is not an ONNX backend; use one of {list(ONNX_FILES)}")
    name = f"{ONNX_DIR}/{ONNX_FILES[backend]}"
    how = f"export it with `python -m flowers_hf.export {source} --format onnx`" + (
        " --quantize int8" if backend == "onnx-int8" else ""
    )
    if is_hub_id(str(source)):
        try:
            path = Path(hf_hub_download(str(source), name, revision=revision))
        except EntryNotFoundError as error:
            raise MissingFileError(f"{source} has no {name} on the Hub: {how} and push the run again") from error
    else:
        path = Path(source).expanduser() / name
        if not path.is_file():
            raise MissingFileError(f"{source} has no {name}: {how}")
        warn_if_stale(Path(source).expanduser())
    config = AutoConfig.from_pretrained(str(source), revision=revision)
    logger.info("Serving %s with ONNX Runtime %s", path, ort.__version__)
    return OnnxModel(path, config)


def warn_if_stale(run_dir: Path) -> None:
    """Warn when ``model.safetensors`` is not the one the export was made from (trained again since)."""
    record = read_record(run_dir / ONNX_DIR)
    weights = run_dir / "model.safetensors"
    exported_from = record.get("made_from", {}).get("model_sha256")
    if exported_from and weights.is_file() and sha256(weights) != exported_from:
        logger.warning("%s was exported from other weights than %s: export it again", run_dir / ONNX_DIR, weights)


def read_record(folder: Path) -> dict[str, Any]:
    """``export.json`` of an export folder, or ``{}`` without one."""
    path = folder / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
