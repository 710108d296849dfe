"""The model: any timm architecture inside transformers' ``TimmWrapperForImageClassification``; saving it loadably."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf
from timm.utils import unfreeze
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

from flowers_hf.core.disk import atomic_folder, disk_full_guard
from flowers_hf.core.errors import ArgumentError, MissingFileError, PretrainedWeightsUnavailableError
from flowers_hf.core.hub import is_hub_id, probe_hub
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.model.arguments import ModelArguments

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"

OFFLINE_HELP = (
    "Train from random initialisation with --pretrained false, or give a local weights file with "
    "--pretrained_path FILE (.safetensors or .pth). Weights already in your Hugging Face cache load with "
    "HF_HUB_OFFLINE=1."
)


def build_model(
    args: ModelArguments, class_names: list[str], dataset: DatasetIdentity | None = None
) -> TimmWrapperForImageClassification:
    """Create the classifier with one output per class, label names in its config, and the asked-for weights.

    Args:
        args: the model options (architecture or saved model, pretrained weights, dropout).
        class_names: the class names, in class id order.
        dataset: the data set it is trained on, recorded in its config (``dataset`` in ``config.json``).
    """
    timm_model = _create_timm_model(args, num_classes=len(class_names))
    config = TimmWrapperConfig(
        architecture=timm_model.pretrained_cfg["architecture"],
        model_args=_model_kwargs(args),
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    if dataset is not None:
        config.dataset = dataset.to_dict()
    model = TimmWrapperForImageClassification(config)
    # Keep timm's own module (and its init or pretrained weights and data config) rather than the copy the
    # wrapper built: the state dicts are identical in layout.
    model.timm_model = timm_model
    return model


def _create_timm_model(args: ModelArguments, num_classes: int) -> torch.nn.Module:
    name, source = _timm_name(args.model)
    kwargs: dict[str, Any] = {"num_classes": num_classes, **_model_kwargs(args)}
    if args.pretrained_path is not None:
        path = str(Path(args.pretrained_path).expanduser())
        logger.info("Initial weights: %s", path)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path}, **kwargs)
    if not args.pretrained:
        logger.info("Initial weights: random (--pretrained false)")
        return timm.create_model(name, pretrained=False, **kwargs)
    if source != "local-dir":
        _check_weights_reachable(name)
    try:
        model = timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as error:
        raise PretrainedWeightsUnavailableError(
            f"Could not load the pretrained weights of '{args.model}' ({type(error).__name__}: {error}). {OFFLINE_HELP}"
        ) from error
    logger.info("Initial weights: %s", model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("file"))
    return model


def _timm_name(model: str) -> tuple[str, str | None]:
    """timm's name for a model argument: a registry name, ``local-dir:PATH`` or ``hf-hub:REPO``."""
    if Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise MissingFileError(f"--model {model}: the folder has no config.json (not a saved model)")
        return f"local-dir:{path}", "local-dir"
    if timm.is_model(model):
        return model, None
    if is_hub_id(model):
        return f"hf-hub:{model}", "hf-hub"
    raise ArgumentError(
        f"--model {model}: not a timm architecture (see timm.list_models()), a saved model folder, or a Hub repo id"
    )


def _model_kwargs(args: ModelArguments) -> dict[str, Any]:
    return {key: value for key in ("drop_rate", "drop_path_rate") if (value := getattr(args, key)) is not None}


def _check_weights_reachable(name: str) -> None:
    if name.startswith("hf-hub:"):
        repo = name.removeprefix("hf-hub:")
    else:
        repo = getattr(timm.get_pretrained_cfg(name), "hf_hub_id", None)
    if not repo:
        return  # weights hosted elsewhere than the Hub: let timm try
    error = probe_hub(repo.split("@")[0])
    if error is not None:
        raise PretrainedWeightsUnavailableError(
            f"Cannot reach the Hugging Face Hub to download the pretrained weights '{repo}' "
            f"({type(error).__name__}: {error}). {OFFLINE_HELP}"
        ) from error


def save_model(model: TimmWrapperForImageClassification, output_dir: str | Path, prep: Preprocessing) -> None:
    """Write ``model.safetensors`` and ``config.json`` in timm's Hub layout, which ``timm``
    (``local-dir:``/``hf-hub:``), ``AutoModelForImageClassification``, ``AutoImageProcessor`` and
    ``pipeline`` all load, with the class names and this run's preprocessing.

    Args:
        model: the trained classifier (left as it is; frozen BatchNorm layers are saved as regular ones).
        output_dir: the folder to write.
        prep: the preprocessing the model was trained and evaluated with.
    """
    # Written beside the folder and renamed into it, the weights last: a crash or a full disk never leaves a
    # model.safetensors that pipeline() would load half-written, nor one without its config.
    with (
        disk_full_guard(output_dir, _weight_bytes(model), then="the same command writes the folder again"),
        atomic_folder(output_dir, last=(WEIGHTS_NAME,)) as staging,
    ):
        _save_timm_layout(model, staging, prep)


def _save_timm_layout(model: TimmWrapperForImageClassification, folder: Path, prep: Preprocessing) -> None:
    # transformers' own save_pretrained (5.23) prefixes every weight with "timm_model." and writes no
    # pretrained_cfg, so neither timm nor the image processor can read it; timm's exporter writes both.
    timm_model = copy.deepcopy(model.timm_model)
    unfreeze(timm_model)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    save_for_hf(
        timm_model,
        str(folder),
        model_config={"label_names": names},
        safe_serialization=True,
        data_config=prep.to_timm_data_config(),
    )
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    # timm 1.0.31 also records num_classes in model_args, which transformers 5.23 passes to timm a second
    # time ("got multiple values for keyword argument 'num_classes'"); the top-level num_classes stays.
    config.get("model_args", {}).pop("num_classes", None)
    # Temperature and "unsure" threshold (evaluation.calibration), the data set it was trained on (data.identity)
    # and the open-set rule (open_set): transformers keeps the keys, timm ignores them.
    for key in ("calibration", "dataset", "ood"):
        if getattr(model.config, key, None):
            config[key] = getattr(model.config, key)
    config_path.write_text(json.dumps(config, indent=2))


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
