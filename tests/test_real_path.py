"""The path a real user takes, run end to end without the internet: `train.py --config configs/<reference>.yaml`
with the default Flowers-102 copy and timm's pretrained weights, through the real loading code
(``datasets.load_dataset(REPO, revision=…)``, ``timm.create_model(…, pretrained=True)``).

``tests/hub_standin.py`` serves, over HTTP on loopback (``HF_ENDPOINT``), the repositories laid out as the Hub
serves them: the data set repository at its pinned commit (parquet shards with the real features and a README
``dataset_info``, one tiny image per class and split) and the timm weight repositories the presets resolve to
(``config.json`` + ``model.safetensors`` as timm writes them for the Hub, random weights). A preset whose data
set id, revision or weight tag stopped resolving to those repositories fails here. A second run with
``HF_HUB_OFFLINE=1`` then trains from the caches the first one filled: the README's recipe for a machine without
internet.
"""

import io
import json
import os
import subprocess
import sys

import datasets
import pytest
import safetensors.torch
import timm
import torch
import yaml
from helpers import ROOT
from hub_standin import HubStandIn, serve
from PIL import Image
from safetensors.torch import load_file
from timm.models import save_for_hf

from flowers_hf.data.arguments import DEFAULT_HUB_DATASET, PINNED_REVISIONS
from flowers_hf.data.labels import FLOWER_NAMES

pytestmark = pytest.mark.slow

# The copy's class names as it might spell them: the run must give the canonical names in the same order.
COPY_NAMES = [name.title() if i % 7 == 0 else name for i, name in enumerate(FLOWER_NAMES)]
SPLIT_SIZE = len(FLOWER_NAMES)  # one image per class in each split
# preset: (weight tag, a weight the recipe keeps frozen, the stages' epoch flags, rerun offline too)
PRESETS = {
    "resnet18.yaml": ("resnet18.tv_in1k", "conv1.weight", ["--num_train_epochs", "1"], True),
    "efficientnet_b3.yaml": (
        "tf_efficientnet_b3.in1k", "conv_stem.weight", ["--num_train_epochs", "1", "--stage2_epochs", "1"], False
    ),
}  # fmt: skip
TEST_KEYS = {"test_accuracy", "test_top5_accuracy", "test_macro_f1", "test_mean_per_class_accuracy"}
# What the test may change: steps, epochs and image size (and where the run goes).
OVERRIDES = ["--max_steps", "1", "--image_size", "32"]


def _parquet(split_index: int, tmp_path) -> bytes:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=COPY_NAMES)})
    images = []
    for label in range(len(COPY_NAMES)):
        buffer = io.BytesIO()
        Image.new("RGB", (20, 16), (2 * label, 80 * split_index, 120)).save(buffer, "JPEG")
        images.append({"bytes": buffer.getvalue(), "path": f"image_{label:05d}.jpg"})
    path = tmp_path / f"split{split_index}.parquet"
    datasets.Dataset.from_dict({"image": images, "label": list(range(len(COPY_NAMES)))}, features).to_parquet(path)
    return path.read_bytes()


def _readme() -> bytes:
    names = {str(i): name for i, name in enumerate(COPY_NAMES)}
    info = {
        "dataset_info": {
            "features": [
                {"name": "image", "dtype": "image"},
                {"name": "label", "dtype": {"class_label": {"names": names}}},
            ],
            "splits": [{"name": s, "num_examples": SPLIT_SIZE} for s in ("train", "validation", "test")],
        },
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")],
            }
        ],
    }
    return f"---\n{yaml.safe_dump(info, sort_keys=False)}---\n# Oxford Flowers-102\n".encode()


def _weights_repo(tag: str, tmp_path) -> dict[str, bytes]:
    folder = tmp_path / tag
    model = timm.create_model(tag, pretrained=False)  # random weights, the tag's pretrained_cfg
    save_for_hf(model, str(folder), safe_serialization=True)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hub_repos")
    hub = HubStandIn()
    files = {
        f"data/{s}-00000-of-00001.parquet": _parquet(i, tmp_path) for i, s in enumerate(("train", "validation", "test"))
    }
    hub.add_repo(
        "dataset", DEFAULT_HUB_DATASET, {**files, "README.md": _readme()}, PINNED_REVISIONS[DEFAULT_HUB_DATASET]
    )
    for tag, *_ in PRESETS.values():
        hub.add_repo("model", f"timm/{tag}", _weights_repo(tag, tmp_path))
    server = serve(hub)
    yield hub
    server.shutdown()


def _train(preset: str, output, hf_home, hub: HubStandIn, offline: bool) -> subprocess.CompletedProcess:
    epochs = PRESETS[preset][2]
    env = {
        **os.environ, "HF_HOME": str(hf_home), "HF_DATASETS_CACHE": str(hf_home / "datasets"),
        "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "1" if offline else "0", "HF_DATASETS_OFFLINE": "1" if offline else "0",
    }  # fmt: skip
    command = [sys.executable, "train.py", "--config", f"configs/{preset}", *OVERRIDES, *epochs]
    command += ["--output_dir", str(output)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_reference_preset_trains_on_the_hub_copy_and_weights_then_again_offline(preset, hub, tmp_path):
    tag, frozen, epochs, rerun_offline = PRESETS[preset]
    hf_home = tmp_path / "hf_home"
    online = _train(preset, tmp_path / "online", hf_home, hub, offline=False)
    assert online.returncode == 0, online.stderr[-4000:]
    paths = [request.path for request in hub.requests]
    revision = PINNED_REVISIONS[DEFAULT_HUB_DATASET]
    assert any(f"/datasets/{DEFAULT_HUB_DATASET}/resolve/{revision}/data/train-" in p for p in paths)
    assert any(f"/timm/{tag}/resolve/" in p and p.endswith("model.safetensors") for p in paths)

    runs = ["online"]
    if rerun_offline:  # the same command from the caches alone (one preset: it shows the recipe, and costs time)
        hub.requests.clear()
        offline = _train(preset, tmp_path / "offline", hf_home, hub, offline=True)
        assert offline.returncode == 0, offline.stderr[-4000:]
        assert hub.requests == []
        runs.append("offline")

    served = safetensors.torch.load(hub.files[f"model:timm/{tag}"]["model.safetensors"])
    for run in runs:
        folder = tmp_path / run
        config = json.loads((folder / "config.json").read_text())
        # The copy's classes, under the canonical names in the Oxford order, and its splits.
        assert [config["label_names"][i] for i in range(len(FLOWER_NAMES))] == list(FLOWER_NAMES)
        assert config["dataset"]["source"] == DEFAULT_HUB_DATASET and config["dataset"]["revision"] == revision
        assert config["dataset"]["split_sizes"] == {"train": SPLIT_SIZE, "validation": SPLIT_SIZE, "test": SPLIT_SIZE}
        assert config["dataset"]["flowers102"] is True and config["dataset"]["official_split"] is False
        # The starting weights were the served ones: a layer the recipe keeps frozen is still exactly theirs.
        saved = load_file(str(folder / "model.safetensors"))
        assert torch.equal(saved[frozen], served[frozen])
        assert len(list(folder.glob("stage*/trainer_state.json"))) == len(epochs) // 2  # a flag and a value a stage
        assert set(json.loads((folder / "test_results.json").read_text())) >= TEST_KEYS  # the run scored its test split
        card = (folder / "README.md").read_text()
        assert f"datasets/{DEFAULT_HUB_DATASET}" in card and "not the official Flowers-102 split" in card
        assert f"[timm/{tag}](https://huggingface.co/timm/{tag})" in card  # the initial weights it names
