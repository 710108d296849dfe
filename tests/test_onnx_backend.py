"""The ONNX Runtime session that serves an export: the settings we give it, any batch size."""

import numpy as np
import onnxruntime as ort
import psutil
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageClassification

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.labels import FLOWER_NAMES
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.export.onnx import export_onnx
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.onnx_backend import OnnxModel, session_options


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """An untrained test_resnet (4 classes, 32 px) exported to ONNX once for the module, with its config."""
    torch.manual_seed(0)
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), list(FLOWER_NAMES[:4]))
    folder = tmp_path_factory.mktemp("untrained")
    save_model(model, folder, resolve_preprocessing(model.timm_model, TransformArguments(image_size=32)))
    export_onnx(AutoModelForImageClassification.from_pretrained(folder), folder / "model.onnx", (32, 32))
    return folder / "model.onnx", AutoConfig.from_pretrained(folder)


def test_the_session_runs_with_the_settings_we_set(onnx_file):
    options = OnnxModel(*onnx_file).session.get_session_options()
    assert options.intra_op_num_threads == psutil.cpu_count(logical=False)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert OnnxModel(*onnx_file, threads=1).session.get_session_options().intra_op_num_threads == 1
    assert session_options(spinning=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_the_graph_takes_any_batch_and_answers_each_photo_as_alone(onnx_file):
    model = OnnxModel(*onnx_file)
    assert model.session.get_inputs()[0].shape == ["batch", 3, 32, 32]  # dynamic: a static one was no faster
    batch = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32))
    torch.testing.assert_close(model(batch[:1]).logits[0], model(batch).logits[0], rtol=0, atol=1e-5)
