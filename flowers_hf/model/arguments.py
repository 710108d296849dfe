"""The model's command-line arguments (``train.py --model …``), parsed by ``transformers.HfArgumentParser``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowers_hf.core.errors import ArgumentError, MissingFileError


@dataclass
class ModelArguments:
    """Which timm model to train and where its starting weights come from."""

    model: str = field(
        default="resnet18",
        metadata={
            "help": "A timm architecture (resnet18, efficientnet_b3, any name in timm.list_models(), optionally with a "
            "weight tag such as resnet18.a1_in1k), a saved run folder, or a Hub repo with timm weights (user/name)."
        },
    )
    pretrained: bool = field(
        default=True,
        metadata={"help": "Start from the architecture's ImageNet weights (downloaded by timm from the Hub)."},
    )
    pretrained_path: str | None = field(
        default=None,
        metadata={
            "help": "A local weights file (.safetensors, or .pth/.bin read with weights_only) for the architecture "
            "given by --model, read the way timm reads pretrained weights: the classifier starts new. To go on "
            "training a model of this project, give its folder as --model instead."
        },
    )
    drop_rate: float | None = field(default=None, metadata={"help": "Dropout before the classifier (timm's)."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth rate (timm's)."})

    def __post_init__(self) -> None:
        if self.pretrained_path is not None and not Path(self.pretrained_path).expanduser().is_file():
            raise MissingFileError(f"--pretrained_path {self.pretrained_path}: no such file")
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ArgumentError(f"--{name} must lie in [0, 1), got {value}")
