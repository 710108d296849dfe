"""Every preset resolves to the weights and preprocessing its comment names, so that none can drift from it."""

from pathlib import Path

import pytest
import timm
from helpers import ROOT

import train
from flowers_hf.core.cli import parse_args
from flowers_hf.data.arguments import DEFAULT_HUB_DATASET, PINNED_REVISIONS
from flowers_hf.data.preprocessing import resolve_preprocessing

# preset: (timm model with weight tag, input size, crop_pct, interpolation, pretrained)
EXPECTED = {
    "resnet18.yaml": ("resnet18.tv_in1k", (224, 224), 0.875, "bilinear", True),
    "efficientnet_b3.yaml": ("tf_efficientnet_b3.in1k", (300, 300), 0.9375, "bicubic", True),
    "resnet18_finetune.yaml": ("resnet18.fb_swsl_ig1b_ft_in1k", (288, 288), 0.875, "bilinear", True),
    "efficientnet_b3_finetune.yaml": ("tf_efficientnet_b3.ns_jft_in1k", (300, 300), 0.904, "bicubic", True),
    "robust.yaml": ("resnet18.fb_swsl_ig1b_ft_in1k", (288, 288), 0.875, "bilinear", True),
    "distill_resnet18.yaml": ("resnet18.fb_swsl_ig1b_ft_in1k", (224, 224), 0.875, "bilinear", True),
    "quickstart.yaml": ("resnet18", (64, 64), 0.95, "bicubic", False),
    "quickstart_robust.yaml": ("resnet18", (64, 64), 0.95, "bicubic", False),
}


def _presets() -> list[Path]:
    return sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name != "synthetic_photos.yaml")


def test_every_training_preset_is_listed():
    assert sorted(EXPECTED) == [p.name for p in _presets()]


@pytest.mark.parametrize("preset", _presets(), ids=lambda p: p.name)
def test_a_preset_resolves_to_the_weights_and_preprocessing_it_names(preset):
    model_args, data_args, transform_args, _ = parse_args(train.ARGUMENTS, ["--config", str(preset)])
    model, size, crop_pct, interpolation, pretrained = EXPECTED[preset.name]
    assert (model_args.model, model_args.pretrained) == (model, pretrained)
    prep = resolve_preprocessing(model_args.model, transform_args)
    assert (prep.input_size, prep.crop_pct, prep.interpolation) == (size, crop_pct, interpolation)
    if pretrained:
        # The weights come from timm's Hub repository of that tag, and the data from the pinned default copy.
        assert timm.get_pretrained_cfg(model).hf_hub_id == f"timm/{model}"
        assert data_args.dataset == DEFAULT_HUB_DATASET
        assert data_args.dataset_revision == PINNED_REVISIONS[DEFAULT_HUB_DATASET]
