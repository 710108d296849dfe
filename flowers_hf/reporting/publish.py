"""Publishing to the Hugging Face Hub: a finished run folder as a model repository, a later evaluation into it, and
``demo/`` as a Gradio Space.

The token comes from HF_TOKEN or the login cache (`hf auth login`); it is never logged or written anywhere. The
command line is ``python -m flowers_hf.push push …`` (``flowers_hf/push.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, SpaceCard
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

from flowers_hf.core.errors import HubPushError, MissingFileError
from flowers_hf.core.hub import is_hub_id
from flowers_hf.reporting.model_card import LOCAL_PLACEHOLDER, add_eval_results

logger = logging.getLogger(__name__)

# What a run folder holds that does not belong in a model repo: per-stage checkpoints, TensorBoard logs.
RUN_IGNORE = ["stage*/**", "checkpoint-*/**", "runs/**", ".*", "**/.*"]
# The Space: the demo folder plus the package it imports (uploaded from this checkout, never copied into demo/).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEMO_DIR = PACKAGE_DIR.parent / "demo"
SPACE_IGNORE = ["**/__pycache__/**", "*.pyc", "**/*.pyc", ".*", "**/.*"]


def check_push_access(repo_id: str, token: str | None = None) -> str:
    """Fail fast, before hours of training, when a push could not succeed; return the account name.

    Args:
        repo_id: the target repository, ``owner/name``.
        token: a Hub token; ``None`` uses ``HF_TOKEN`` or the login cache (``hf auth login``).
    """
    if not is_hub_id(repo_id):
        raise ValueError(f"'{repo_id}' is not a Hub repository id; use OWNER/NAME, e.g. your-name/flowers-resnet18")
    try:
        account = HfApi(token=token).whoami()
    except OfflineModeIsEnabled as error:
        raise HubPushError("Cannot push with HF_HUB_OFFLINE=1 set; unset it to publish to the Hub") from error
    except Exception as error:  # no token (LocalTokenNotFoundError), a rejected one (HTTP 401), no network
        raise HubPushError(
            f"Cannot push to {repo_id} ({_first_line(error)}). Log in with `hf auth login` or set HF_TOKEN to a "
            "token with write access, and check the network"
        ) from error
    return account["name"]


def push_model(run_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Publish a run folder written by ``train.py``: weights, ``config.json`` (which holds the image processor's
    configuration for a timm model), the model card with its plots, the results and, when ``python -m
    flowers_hf.export`` has written it, ``onnx/`` (the ONNX files and their record); never the checkpoints.

    The model card's usage examples are pointed at ``repo_id``. Returns the commit URL.

    Args:
        run_dir: the run's output folder.
        repo_id: the target model repository, ``owner/name`` (created if missing).
        token: a Hub token; ``None`` uses ``HF_TOKEN`` or the login cache.
        private: create the repository as private.
    """
    run_dir = Path(run_dir)
    missing = [name for name in ("model.safetensors", "config.json") if not (run_dir / name).is_file()]
    if missing:
        raise MissingFileError(f"{run_dir} is not a finished run folder: {', '.join(missing)} missing")
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=_card_for(run_dir / path, repo_id))
        for path in _files(run_dir, RUN_IGNORE)
    ]
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=f"Upload {run_dir.name} trained with flowers_hf")
    except Exception as error:  # HTTP and connection errors differ between huggingface_hub versions
        raise HubPushError(
            f"Uploading {run_dir} to {repo_id} failed ({_first_line(error)}). The folder is complete; try again with "
            f"`python -m flowers_hf.push push {run_dir} --repo {repo_id}`"
        ) from error
    logger.info("Pushed %d files from %s to %s", len(operations), run_dir, commit.commit_url)
    return commit.commit_url


def push_results(
    folder: str | Path, repo_id: str, results: list[EvalResult], path_in_repo: str, token: str | None = None
) -> str:
    """Add a later evaluation to a published model repository, in one commit: its files (results, reports, figures)
    under ``path_in_repo`` and its scores in the repository card's model-index. Returns the commit URL.

    Args:
        folder: the evaluation's output folder.
        repo_id: the model repository, ``owner/name``; it must have a model card (``README.md``).
        results: the model-index entries (``flowers_hf.reporting.model_card.evaluation_results``).
        path_in_repo: where the files go in the repository, e.g. ``eval_test``.
        token: a Hub token; ``None`` uses ``HF_TOKEN`` or the login cache.
    """
    folder = Path(folder)
    retry = f"the results stay in {folder}; run the evaluation again with --push_results {repo_id}"
    try:
        card = ModelCard.load(repo_id, token=token)
    except Exception as error:  # no such repository or no card, no access, no network
        raise HubPushError(f"Cannot read the model card of {repo_id} ({_first_line(error)}); {retry}") from error
    card = add_eval_results(card, results, repo_id.split("/")[-1])
    operations = [CommitOperationAdd("README.md", str(card).encode())]
    operations += [
        CommitOperationAdd(f"{path_in_repo}/{path}", folder / path) for path in _files(folder, [".*", "**/.*"])
    ]
    try:
        commit = HfApi(token=token).create_commit(
            repo_id, operations, commit_message=f"Add evaluation results ({path_in_repo}) with flowers_hf"
        )
    except Exception as error:  # HTTP and connection errors differ between huggingface_hub versions
        raise HubPushError(f"Uploading the results to {repo_id} failed ({_first_line(error)}); {retry}") from error
    logger.info("Pushed %d results and %d files to %s", len(results), len(operations) - 1, commit.commit_url)
    return commit.commit_url


def push_space(
    repo_id: str, model_id: str, token: str | None = None, private: bool = False, demo_dir: Path = DEMO_DIR
) -> str:
    """Publish ``demo/`` with the ``flowers_hf`` package as a Gradio Space that serves ``model_id``.

    The model is given as the Space variable ``MODEL_ID`` and in the Space card's ``models`` list. Returns the
    commit URL.

    Args:
        repo_id: the Space, ``owner/name`` (created if missing).
        model_id: the model repository the Space serves.
        token: a Hub token; ``None`` uses ``HF_TOKEN`` or the login cache.
        private: create the Space as private.
        demo_dir: the folder with ``app.py``, ``README.md`` and ``requirements.txt``.
    """
    card = SpaceCard.load(demo_dir / "README.md")
    card.data.models = [model_id]
    operations = [CommitOperationAdd("README.md", str(card).encode())]
    operations += [
        CommitOperationAdd(path, demo_dir / path) for path in _files(demo_dir, SPACE_IGNORE) if path != "README.md"
    ]
    operations += [
        CommitOperationAdd(f"flowers_hf/{path}", PACKAGE_DIR / path) for path in _files(PACKAGE_DIR, SPACE_IGNORE)
    ]
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.add_space_variable(repo_id, "MODEL_ID", model_id, description="The model the demo serves")
    commit = api.create_commit(
        repo_id, operations, repo_type="space", commit_message=f"Flowers-102 demo serving {model_id}"
    )
    logger.info("Pushed the demo (%d files) to %s", len(operations), commit.commit_url)
    return commit.commit_url


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _files(folder: Path, ignore: list[str]) -> list[str]:
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=ignore))


def _card_for(path: Path, repo_id: str) -> Path | bytes:
    """The model card with its usage examples pointed at the Hub repository; any other file as it is."""
    if path.name != "README.md":
        return path
    text = path.read_text(encoding="utf-8")
    text = text.replace(f"local-dir:{LOCAL_PLACEHOLDER}", f"hf-hub:{repo_id}").replace(LOCAL_PLACEHOLDER, repo_id)
    return text.encode("utf-8")
