"""Publishing to the Hub: the real upload code against a local stand-in that records what was sent.

The Hub cannot be reached from the test machines, so ``HF_ENDPOINT`` points at ``hub_standin`` (the one place a
stand-in is acceptable). Every command runs as a user runs it, in a subprocess with a token in ``HF_TOKEN``.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, TINY_RUN
from hub_standin import HubStandIn, serve
from huggingface_hub import ModelCard

import train
from flowers_hf.core.cli import run_cli

pytestmark = pytest.mark.slow  # the commands in subprocesses, on the trained tiny_run

TOKEN = "hf_FlowersTestSecretToken0123456789"
REPO = "flowers-tester/flowers-test-resnet"
SPACE = "flowers-tester/flowers-demo"


@pytest.fixture
def hub():
    standin = HubStandIn()
    server = serve(standin)
    yield standin
    server.shutdown()


def _run(command: list[str], hub: HubStandIn, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", **env}
    environment = {name: value for name, value in environment.items() if value is not None}  # None: unset
    environment.pop("HF_HUB_OFFLINE")
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300)


def _assert_token_nowhere(hub: HubStandIn, result: subprocess.CompletedProcess, *folders) -> None:
    assert TOKEN not in result.stdout + result.stderr
    for files in hub.files.values():
        assert not [path for path, content in files.items() if TOKEN.encode() in content]
    for folder in folders:
        assert not [p for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    # It was used, though: as the bearer token of the account check and of every write.
    used = [r for r in hub.requests if r.method == "POST" or r.path.startswith("/api/whoami")]
    assert used and {r.headers.get("authorization") for r in used} == {f"Bearer {TOKEN}"}


def test_push_publishes_a_run_without_its_checkpoints(hub, tiny_run):
    result = _run([sys.executable, "-m", "flowers_hf.push", "push", str(tiny_run), "--repo", REPO], hub)
    assert result.returncode == 0, result.stderr
    files = hub.files[f"model:{REPO}"]
    # Everything in the folder but the per-stage checkpoints.
    expected = {p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*") if p.is_file()}
    assert set(files) == {path for path in expected if not path.startswith("stage")}
    assert {
        "README.md", "config.json", "model.safetensors", "train_config.yaml", "test_results.json",
        "eval_results.json", "classification_report.json", "confusion_matrix.png", "loss_curve.png",
    } <= set(files)  # fmt: skip
    assert files["model.safetensors"] == (tiny_run / "model.safetensors").read_bytes()
    config = json.loads(files["config.json"])
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]  # the image processor's configuration
    card = files["README.md"].decode()
    for expected in (
        f'pipeline("image-classification", model="{REPO}")',
        f'timm.create_model("hf-hub:{REPO}", pretrained=True)',
        "## Limitations",
        "![Confusion matrix",
        "| Accuracy (top-1) |",
        "pink primrose",
    ):
        assert expected in card
    assert "path/to/this/folder" not in card
    assert result.stdout.strip().endswith(f"{REPO}/commit/" + "0" * 40)
    _assert_token_nowhere(hub, result, tiny_run)


def test_push_space_uploads_the_demo_and_the_package(hub):
    command = [sys.executable, "-m", "flowers_hf.push", "push-space", "--repo", SPACE, "--model", REPO]
    result = _run(command, hub)
    assert result.returncode == 0, result.stderr
    files = hub.files[f"space:{SPACE}"]
    expected = {"app.py", "README.md", "requirements.txt", "flowers_hf/serving/classifier.py", "flowers_hf/__init__.py"}
    assert expected <= set(files)
    assert any(path.startswith("examples/") for path in files)
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]
    card = files["README.md"].decode()
    assert "sdk: gradio" in card and "app_file: app.py" in card and f"- {REPO}" in card
    assert hub.variables[SPACE] == {"MODEL_ID": REPO}
    assert hub.created[-1]["type"] == "space" and hub.created[-1]["sdk"] == "gradio"
    _assert_token_nowhere(hub, result)


def test_evaluate_adds_its_scores_to_the_run_folders_card_and_to_the_published_one(hub, tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("stage*"))
    published = (run / "README.md").read_bytes()
    hub.add_repo("model", REPO, {"README.md": published, "config.json": (run / "config.json").read_bytes()})
    command = [
        sys.executable, "-m", "flowers_hf.evaluate", str(run), "--tta", "--tta_views", "flip", "--corruptions",
        "--corruption_names", "brightness", "--severities", "2", "--disable_tqdm", "true", "--push_results", REPO,
    ]  # fmt: skip
    result = _run(command, hub)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((run / "eval_test" / "test_results.json").read_text())
    files = hub.files[f"model:{REPO}"]
    pushed = ModelCard(files["README.md"].decode())
    entries = {r.metric_name: r.metric_value for r in pushed.data.eval_results}
    assert entries["Accuracy with test-time augmentation"] == round(scores["test_tta_accuracy"], 4)
    assert entries["Mean accuracy under corruption"] == round(scores["test_mean_corruption_accuracy"], 4)
    assert entries["Accuracy"] == round(scores["test_accuracy"], 4)  # training's own entry, the same score
    assert len(pushed.data.eval_results) == len(ModelCard(published.decode()).data.eval_results) + 3
    assert pushed.text == ModelCard(published.decode()).text  # only the metadata changed
    assert {"eval_test/test_results.json", "eval_test/robustness.png", "eval_test/top_mistakes.png"} <= set(files)
    assert files["config.json"] == (run / "config.json").read_bytes()  # the rest of the repository is left alone
    # The run folder's own card holds the same entries, and one commit carried everything.
    local = ModelCard.load(run / "README.md")
    assert {r.metric_name: r.metric_value for r in local.data.eval_results} == entries
    assert len([r for r in hub.requests if "/commit/" in r.path]) == 1
    _assert_token_nowhere(hub, result, run)


def test_train_push_to_hub_publishes_the_finished_model(hub, tmp_path):
    output = tmp_path / "run"
    command = [sys.executable, "train.py", *TINY_RUN, "--num_train_epochs", "1", "--output_dir", str(output)]
    command += ["--push_to_hub", "true", "--hub_model_id", REPO]
    result = _run(command, hub)
    assert result.returncode == 0, result.stderr[-3000:]
    files = hub.files[f"model:{REPO}"]
    assert files["model.safetensors"] == (output / "model.safetensors").read_bytes()
    assert not [path for path in files if path.startswith("stage")]
    # Only the finished folder went up: one commit, after training.
    commits = [r for r in hub.requests if "/commit/" in r.path]
    assert len(commits) == 1
    _assert_token_nowhere(hub, result, output)


def test_a_hub_token_flag_is_for_the_push_alone_no_written_file_holds_it(hub, tmp_path):
    # Planted as --hub_token only (no HF_TOKEN): two stages, so two Trainers pickle their arguments into checkpoints
    # (training_args.bin), TensorBoard writes its events, every log line goes to a file.
    planted = "hf_PLANTEDflagTokenNotReal0123456789"
    output, log = tmp_path / "run", tmp_path / "train.log"
    command = [sys.executable, "train.py", *TINY_RUN, "--num_train_epochs", "1", "--stage2_epochs", "1"]
    command += ["--output_dir", str(output), "--report_to", "tensorboard", "--logging_steps", "1"]
    command += ["--push_to_hub", "true", "--hub_model_id", REPO, "--hub_token", planted]
    result = _run(command, hub, HF_TOKEN=None)
    log.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    written = [p for p in [*output.rglob("*"), log] if p.is_file()]
    assert {"training_args.bin", "train_config.yaml", "config.json", "README.md"} <= {p.name for p in written}
    assert any(p.name.startswith("events.out.tfevents") for p in written)
    assert [p for p in written if p.name == "training_args.bin" and "stage2" in p.parts]
    assert not [p for p in written if planted.encode() in p.read_bytes()]
    for files in hub.files.values():  # nor any file uploaded
        assert not [path for path, content in files.items() if planted.encode() in content]
    # It was the push's token: the account check and the commit carried it.
    used = [r for r in hub.requests if r.method == "POST" or r.path.startswith("/api/whoami")]
    assert used and {r.headers.get("authorization") for r in used} == {f"Bearer {planted}"}


def test_train_push_without_access_stops_before_training(tmp_path, caplog):
    output = tmp_path / "run"
    argv = [*TINY_RUN, "--output_dir", str(output), "--push_to_hub", "true", "--hub_model_id", REPO]
    assert run_cli(train.main, argv) == 1  # offline here (HF_HUB_OFFLINE=1): the check fails at once
    assert "Cannot push" in caplog.text and "hf auth login" in caplog.text
    assert not (output / "stage1").exists()
