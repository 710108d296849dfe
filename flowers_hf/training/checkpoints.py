"""What a rerun may resume from: the newest complete checkpoint, of a model made for the same classes.

transformers 5.23 writes a checkpoint in place (``Trainer._save_checkpoint``: weights, optimizer, scheduler, RNG
states, then ``trainer_state.json`` last), and its ``get_last_checkpoint`` picks the highest ``checkpoint-N``
folder whatever it holds. A run killed while saving leaves a half-written folder that it would pick.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

from safetensors import safe_open
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from flowers_hf.core.errors import ClassMismatchError
from flowers_hf.model.arguments import ModelArguments

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
_TORCH_FILES = ("*.pt", "*.pth", "*.bin")  # zip archives written by torch.save


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or ``None`` when it is complete.

    Complete means: ``trainer_state.json`` (written last) parses and names the folder's step, there are weights,
    every safetensors file has its whole declared length, and every torch file is a whole zip archive (its
    directory comes last). Nothing is unpickled.

    Args:
        folder: a ``checkpoint-N`` folder.
    """
    folder = Path(folder)
    try:
        state = json.loads((folder / TRAINER_STATE_NAME).read_text())
    except FileNotFoundError:
        return f"no {TRAINER_STATE_NAME} (the Trainer writes it last: the save was cut short)"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE_NAME} is not readable ({error})"
    match = _CHECKPOINT.match(folder.name)
    if match and state.get("global_step") != int(match.group(1)):
        return f"{TRAINER_STATE_NAME} is for step {state.get('global_step')}, not {match.group(1)}"
    if not any(file for pattern in _WEIGHTS for file in folder.glob(pattern)):
        return "no model weights"
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own SafetensorError on a cut-off file
            return f"{file.name} is incomplete ({error})"
    for file in sorted(f for pattern in _TORCH_FILES for f in folder.glob(pattern)):
        if not zipfile.is_zipfile(file):
            return f"{file.name} is incomplete (not a whole archive)"
    return None


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The ``checkpoint-N`` folder with the highest N that is complete; incomplete newer ones are skipped, with a
    warning (they are left in place: the Trainer writes over them when it reaches their step again).

    Args:
        folder: a Trainer ``output_dir``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    for _, checkpoint in sorted(found, reverse=True):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        logger.warning("Not resuming from %s: %s", checkpoint, problem)
    return None


def saved_num_classes(folder: str | Path) -> int | None:
    """The number of classes in a saved model's ``config.json`` (a run folder or a checkpoint), if it says."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("num_classes", "num_labels"):
        if isinstance(config.get(key), int):
            return config[key]
    names = config.get("label_names") or config.get("id2label")
    return len(names) if names else None


def check_num_classes(folder: str | Path, num_classes: int, what: str, fix: str) -> None:
    """Raise ``ClassMismatchError`` when the model saved in ``folder`` has another number of classes.

    Args:
        folder: a run folder or checkpoint with ``config.json``.
        num_classes: the number of classes of the data set.
        what: how the message names the folder.
        fix: what the message tells the reader to do.
    """
    saved = saved_num_classes(folder)
    if saved is not None and saved != num_classes:
        raise ClassMismatchError(
            f"{what} {folder} has a classifier for {saved} classes, but the data set has {num_classes}. {fix}"
        )


def check_starting_model(args: ModelArguments, class_names: list[str]) -> None:
    """Refuse a run folder given as ``--model`` whose classifier has another number of classes than the data set."""
    if args.pretrained and args.pretrained_path is None and Path(args.model).expanduser().is_dir():
        fix = (
            f"To start from its backbone with a new classifier, give --model {_architecture(args.model)} "
            f"--pretrained_path {Path(args.model) / 'model.safetensors'}."
        )
        check_num_classes(Path(args.model).expanduser(), len(class_names), "--model", fix)


def _architecture(folder: str) -> str:
    try:
        return json.loads((Path(folder).expanduser() / "config.json").read_text())["architecture"]
    except (OSError, ValueError, KeyError):
        return "ARCHITECTURE"
