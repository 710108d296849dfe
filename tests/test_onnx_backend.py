"""The ONNX Runtime sessions that serve an export: the settings we give them, and one photo on the static-shape graph
answered as the dynamic graph answers it."""

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
from flowers_hf.serving.onnx_backend import OnnxModel


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """An untrained test_resnet (4 classes, 32 px) exported to ONNX once for the module, with its config."""
    torch.manual_seed(0)
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), list(FLOWER_NAMES[:4]))
    folder = tmp_path_factory.mktemp("untrained")
    save_model(model, folder, resolve_preprocessing(model.timm_model, TransformArguments(image_size=32)))
    export_onnx(AutoModelForImageClassification.from_pretrained(folder), folder / "model.onnx", (32, 32))
    return folder / "model.onnx", AutoConfig.from_pretrained(folder)


def test_the_sessions_run_with_the_settings_we_set(onnx_file):
    model = OnnxModel(*onnx_file)
    for session in (model.session, model.single):
        options = session.get_session_options()
        assert options.intra_op_num_threads == psutil.cpu_count(logical=False)
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert model.session.get_inputs()[0].shape == ["batch", 3, 32, 32]  # any batch
    assert model.single.get_inputs()[0].shape == [1, 3, 32, 32]  # the static-shape graph of one photo
    assert OnnxModel(*onnx_file, threads=1).single.get_session_options().intra_op_num_threads == 1


def test_one_photo_runs_on_the_static_graph_with_the_dynamic_graphs_answer(onnx_file, monkeypatch):
    model = OnnxModel(*onnx_file)
    batch = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32))
    ran = []
    for name in ("session", "single"):
        monkeypatch.setattr(model, name, _Recording(getattr(model, name), name, ran))
    three, one = model(batch).logits, model(batch[:1]).logits
    assert ran == ["session", "single"]  # three photos on the dynamic graph, one on the static one
    torch.testing.assert_close(one[0], three[0], rtol=0, atol=1e-5)


class _Recording:
    """A session that notes its name each time it runs."""

    def __init__(self, session: ort.InferenceSession, name: str, ran: list[str]) -> None:
        self.session, self.name, self.ran = session, name, ran

    def run(self, *args, **kwargs):
        self.ran.append(self.name)
        return self.session.run(*args, **kwargs)
