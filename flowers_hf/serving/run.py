"""A finished run read back: the model with its preprocessing and identity, and the data options it was trained
with. The one reader of a run folder for ``python -m flowers_hf.evaluate``, ``python -m flowers_hf.export`` and the
demo; a Hub repository reads the same way, without data options."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.serving.classifier import ImageClassifier

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "train_config.yaml"  # the resolved arguments of the train.py run that wrote the folder


@dataclass(frozen=True)
class SavedRun:
    """A model folder (or Hub repo) as ``train.py`` wrote it.

    Attributes:
        classifier: the model with its eval preprocessing.
        data_options: the data options it was trained with (``train_config.yaml``); empty where there is none.
    """

    classifier: ImageClassifier
    data_options: dict[str, Any]

    @property
    def prep(self) -> Preprocessing:
        return self.classifier.prep

    @property
    def identity(self) -> DatasetIdentity | None:
        """What it was trained on, as its ``config.json`` records it (``None`` for older folders)."""
        return self.classifier.dataset


def load_run(name_or_path: str | Path, **classifier_options: Any) -> SavedRun:
    """Read a run folder or Hub repo back.

    Args:
        name_or_path: the folder ``train.py`` wrote, or ``owner/name`` on the Hub.
        classifier_options: ``ImageClassifier.from_pretrained``'s (device, backend, tta, revision).
    """
    return SavedRun(ImageClassifier.from_pretrained(name_or_path, **classifier_options), run_data_options(name_or_path))


def run_data_options(name_or_path: str | Path | None) -> dict[str, Any]:
    """The data options (``DataArguments`` fields) a run was trained with, from its ``train_config.yaml``; ``{}``
    for a Hub repo or a folder without one."""
    path = Path(name_or_path or "").expanduser() / RUN_CONFIG_FILE
    if not name_or_path or not path.is_file():
        return {}
    saved = yaml.safe_load(path.read_text()) or {}
    options = {f.name: saved[f.name] for f in dataclasses.fields(DataArguments) if saved.get(f.name) is not None}
    logger.info("Data options from %s: %s", path, options)
    return options
