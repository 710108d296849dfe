"""The Hugging Face Hub as this project's modules meet it: what names a repository, and whether it can be reached.

    python -m flowers_hf.push push RUN_DIR --repo USER/NAME                 # a finished run, as a model repo
    python -m flowers_hf.push push-space --repo USER/SPACE --model USER/NAME  # demo/ as a Gradio Space

Publishing itself lives in ``flowers_hf.reporting.publish``; this package's ``__main__`` is its command line.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import OfflineModeIsEnabled

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` reads as a Hub repository id (``owner/name``) rather than a local path or a keyword."""
    if not name or name.startswith((".", "/", "~")):
        return False
    return bool(_REPO_ID.match(name)) and not Path(name).expanduser().exists()


def probe_hub(repo_id: str, repo_type: str = "model", revision: str | None = None) -> Exception | None:
    """Ask the Hub for a repository's metadata once (10 s timeout) and return the error, if any.

    Downloads retry for most of a minute before they give up offline; this answers in under a second.
    With ``HF_HUB_OFFLINE=1`` it returns ``None``: the libraries then read the cache and fail at once.

    Args:
        repo_id: the repository, for example ``timm/resnet18.a1_in1k``.
        repo_type: ``model`` or ``dataset``.
        revision: branch, tag or commit.
    """
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=10)
    except OfflineModeIsEnabled:
        return None
    except Exception as error:  # the HTTP client's connection errors differ between huggingface_hub versions
        return error
    return None
