"""Freezing by timm parameter groups: what trains, what stays put (BatchNorm statistics included)."""

import pytest
import timm
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from flowers_hf.training.layer_groups import describe_trainable, parameter_groups, set_trainable


def _model(name: str = "test_resnet") -> torch.nn.Module:
    torch.manual_seed(0)
    # Residual branches start at zero in timm's ResNets, which would give their layers zero gradients.
    kwargs = {"zero_init_last": False} if "resnet" in name else {}
    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train_step(model: torch.nn.Module) -> None:
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 5
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()


def test_resnet_groups_run_from_stem_to_head():
    groups = parameter_groups(_model())
    assert [g[0].split(".")[0] for g in groups] == ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert groups[-1] == ["fc.bias", "fc.weight"]
    assert sum(len(g) for g in groups) == len(list(_model().parameters()))


def test_efficientnet_last_group_holds_the_last_blocks_and_conv_head():
    groups = parameter_groups(_model("test_efficientnet"))
    assert groups[-1] == ["classifier.bias", "classifier.weight"]
    assert any(name.startswith("conv_head") for name in groups[-2])
    assert all(name.startswith(("blocks", "conv_head", "bn2")) for name in groups[-2])


def test_linear_probe_trains_the_head_only_and_keeps_batchnorm_statistics():
    model = _model()
    set_trainable(model, parameter_groups(model), last_n=1)
    before = _snapshot(model)
    _train_step(model)
    after = _snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    head = model.fc.in_features * 5 + 5
    total = sum(p.numel() for p in _model().parameters())
    assert describe_trainable(model).startswith(f"trainable {head:,} of {total:,} parameters")


def test_stage_two_unfreezes_the_last_group_and_its_batchnorm():
    model = _model()
    groups = parameter_groups(model)
    set_trainable(model, groups, last_n=1)
    set_trainable(model, groups, last_n=2)  # head and layer4, as stage 2 with --stage2_unfreeze 1
    before = _snapshot(model)
    _train_step(model)
    after = _snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k in before if k.startswith(("layer4", "fc")) and not k.endswith("num_batches_tracked")}
    assert {k for k in changed if not k.endswith("num_batches_tracked")} == trainable
    assert any("running_mean" in k for k in changed)  # the unfrozen BatchNorm learns statistics again
    assert not any(k.startswith(("conv1", "bn1", "layer1", "layer2", "layer3")) for k in changed)


def test_everything_trainable_again_restores_regular_batchnorm():
    model = _model()
    groups = parameter_groups(model)
    set_trainable(model, groups, last_n=1)
    set_trainable(model, groups, last_n=None)
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(model.bn1, torch.nn.BatchNorm2d)
    before = _snapshot(model)
    _train_step(model)
    after = _snapshot(model)
    assert not torch.equal(before["conv1.0.weight"], after["conv1.0.weight"])


def test_frozen_model_still_loads_its_own_state_dict():
    model = _model()
    set_trainable(model, parameter_groups(model), last_n=1)
    with torch.no_grad():  # weights and BatchNorm statistics that no freshly built model has
        for tensor in model.state_dict().values():
            tensor.add_(torch.rand_like(tensor) + 0.5)
    copy = _model()
    set_trainable(copy, parameter_groups(copy), last_n=1)
    source, before = _snapshot(model), _snapshot(copy)
    assert set(source) == set(before)
    assert not any(torch.equal(source[k], before[k]) for k in source)  # a load that copies nothing fails below
    copy.load_state_dict(model.state_dict())
    assert all(torch.equal(tensor, source[k]) for k, tensor in _snapshot(copy).items())
    # Still frozen as before the load: the head alone trains, the backbone's BatchNorm stays frozen.
    assert {name for name, p in copy.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    assert isinstance(copy.bn1, FrozenBatchNorm2d) and isinstance(copy.layer4[0].bn1, FrozenBatchNorm2d)


def test_too_many_groups_is_an_error():
    model = _model()
    with pytest.raises(ValueError, match="1 to 6"):
        set_trainable(model, parameter_groups(model), last_n=7)
