"""Image-classification data sets on the Hugging Face Hub (the default: a copy of Flowers-102)."""

from __future__ import annotations

import logging

import datasets
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from flowers_hf.core.errors import DataError, HubUnavailableError
from flowers_hf.core.hub import probe_hub

logger = logging.getLogger(__name__)

LOCAL_ALTERNATIVES = (
    "Use a local source instead: --dataset PATH to the Oxford distribution (imagelabels.mat, setid.mat and jpg/ "
    "or 102flowers.tgz), to an imagefolder tree (train/<class>/…, optional validation/ and test/), or to a "
    "folder written by DatasetDict.save_to_disk; or --dataset synthetic for the built-in offline set. "
    "A copy already in your Hugging Face cache loads with HF_HUB_OFFLINE=1."
)


def load_from_hub(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Download (or read from the cache) a Hub data set; fail fast with local alternatives when offline.

    Args:
        repo_id: the data set id, for example ``Donghyun99/Oxford-Flower-102`` or ``beans``.
        revision: branch, tag or commit.
        cache_dir: the ``datasets`` cache folder.
    """
    _check_reachable(repo_id, revision)
    try:
        loaded = datasets.load_dataset(repo_id, revision=revision, cache_dir=cache_dir)
    except ConnectionError as error:
        raise HubUnavailableError(
            f"Could not load '{repo_id}' from the Hub or the cache ({error}). {LOCAL_ALTERNATIVES}"
        ) from error
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    logger.info("Loaded %s from the Hub: %s", repo_id, {k: len(v) for k, v in loaded.items()})
    return loaded


def _check_reachable(repo_id: str, revision: str | None) -> None:
    error = probe_hub(repo_id, repo_type="dataset", revision=revision)
    if error is None:
        return
    if isinstance(error, (RepositoryNotFoundError, GatedRepoError)):
        raise DataError(
            f"'{repo_id}' is neither a local folder nor a data set on the Hub that you can read "
            f"({type(error).__name__}). {LOCAL_ALTERNATIVES}"
        ) from error
    raise HubUnavailableError(
        f"Cannot reach the Hugging Face Hub to load '{repo_id}' ({type(error).__name__}: {error}). {LOCAL_ALTERNATIVES}"
    ) from error
