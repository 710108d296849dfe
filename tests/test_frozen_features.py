"""A frozen backbone's features computed once: the classifier alone on them scores as the whole model does, the
backbone sees each image once, --probe_views trains on precomputed views, and the saved model is the full one."""

import json

import pytest
import timm.models.resnet
import torch
from test_train import TINY
from transformers import AutoModelForImageClassification

import train
from flowers_hf.core.cli import parse_args
from flowers_hf.core.errors import ArgumentError
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.batch_color import build_batch_color_jitter
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import BatchTransform, build_eval_transform, build_train_transform, with_transforms
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model, save_model
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.distill import Teacher
from flowers_hf.training.frozen_features import FeatureSources, FrozenFeatures, head_only
from flowers_hf.training.layer_groups import parameter_groups, set_trainable

# One stage on the frozen backbone: 80 training, 80 validation, 480 test images, 3 epochs.
PROBE = [*TINY, "--stage2_epochs", "0", "--num_train_epochs", "3"]
N_TRAIN, N_VALIDATION, N_TEST, EPOCHS = 80, 80, 480, 3
# The features path is checked once against the whole model on 8 validation images: 2 passes through the backbone.
CHECKED = 2 * 8


# The quick tests' data: TINY's classes and image size, a quarter of its images (20 training, 20 validation).
SMALL = DataArguments(
    dataset="synthetic", synthetic_num_classes=4, synthetic_images_per_class=40, synthetic_image_size=32
)
SMALL_TRAIN = 20


@pytest.fixture(scope="module")
def tiny_data():
    return load_data(args=SMALL).splits


def _features(
    name: str,
    tiny_data,
    tmp_path,
    views: int = 0,
    aug: TransformArguments | None = None,
    jitter: bool = True,
    teacher=None,
    **model_kwargs,
) -> tuple[FrozenFeatures, torch.nn.Module]:
    class_names = tiny_data["train"].features["label"].names
    torch.manual_seed(0)
    model = build_model(ModelArguments(model=name, pretrained=False, **model_kwargs), class_names)
    set_trainable(model.timm_model, parameter_groups(model.timm_model), 1)
    prep = resolve_preprocessing(model.timm_model, TransformArguments(image_size=32))
    train = build_train_transform(prep, aug, seed=0, normalize=False)
    data = with_transforms(tiny_data, train, build_eval_transform(prep, normalize=False))
    plain = with_transforms(tiny_data, build_eval_transform(prep, normalize=False), build_eval_transform(prep))
    args = FlowersTrainingArguments(
        output_dir=str(tmp_path), freeze_backbone=True, probe_views=views, dataloader_num_workers=0, report_to="none"
    )
    others = {"validation": data["validation"], "test": data["test"]}
    device_part = build_batch_color_jitter(aug) if aug is not None and jitter else None
    sources = FeatureSources(data["train"], plain["train"], others, device_part)
    made_teacher = teacher(model, prep, class_names) if teacher else None
    return FrozenFeatures(model, sources, args, prep, made_teacher), model


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("test_resnet", {}), ("test_efficientnet", {"drop_rate": 0.3}), ("test_vit", {}), ("test_convnext", {})],
)
def test_the_classifier_on_the_features_gives_the_models_logits(name, kwargs, tiny_data, tmp_path):
    features, model = _features(name, tiny_data, tmp_path, **kwargs)
    assert features.available()
    validation = features.split("validation")
    images = _batch(_eval_split(tiny_data["validation"], model))["pixel_values"]
    model.eval()
    with torch.no_grad():
        whole = model(pixel_values=images).logits
        with head_only(model):
            head = model(pixel_values=validation.views[0]).logits
            assert torch.allclose(model(pixel_values=images).logits, whole)  # images still take the whole path
    assert torch.allclose(head, whole, atol=1e-5, rtol=1e-4)
    assert torch.equal(validation.labels, torch.tensor(tiny_data["validation"]["label"]))


def _eval_split(split, model, size: int = 32):
    """``split`` with the eval transform of ``model`` at ``size`` px, normalised."""
    prep = resolve_preprocessing(model.timm_model, TransformArguments(image_size=size))
    return split.with_transform(BatchTransform(build_eval_transform(prep)))


def _batch(split) -> dict[str, torch.Tensor]:
    return split[: len(split)]


def test_features_are_computed_once_and_again_when_the_backbone_changes(tiny_data, tmp_path):
    features, model = _features("test_resnet", tiny_data, tmp_path)
    first = features.split("validation")
    assert features.split("validation") is first  # kept
    with torch.no_grad():
        model.timm_model.get_classifier().weight.add_(1.0)  # the head trains: the features stay valid
    assert features.split("validation") is first
    with torch.no_grad():
        model.timm_model.conv1[0].weight.mul_(0.5)  # the backbone changed (stage 2): computed again
    again = features.split("validation")
    assert again is not first and not torch.allclose(again.views, first.views)


def test_probe_views_are_augmented_distinct_and_repeatable(tiny_data, tmp_path):
    augmented = _features("test_resnet", tiny_data, tmp_path, views=3)[0].training()
    assert augmented.views.shape[:2] == (3, SMALL_TRAIN)
    assert not torch.allclose(augmented.views[0], augmented.views[1])
    repeat = _features("test_resnet", tiny_data, tmp_path, views=3)[0].training()
    assert torch.equal(augmented.views, repeat.views)  # a resumed run trains on the same views
    plain, _ = _features("test_resnet", tiny_data, tmp_path, views=1)
    unaugmented = plain.training()
    assert unaugmented.views.shape[:2] == (1, SMALL_TRAIN)
    # One view, no augmentation: what the eval transform gives, the same on every epoch.
    again = plain.training()
    assert torch.equal(unaugmented.views, again.views)
    drawn = {tuple(augmented[0]["pixel_values"].tolist()) for _ in range(30)}
    assert 1 < len(drawn) <= 3  # each epoch draws one of the three views


def _itself_as_teacher(tmp_path):
    """A teacher that is the student as it is now (saved and loaded back): its logits on a view are the classifier
    on that view's features, which ties each stored logit to the very pixels its features came from."""

    def make(model, prep, class_names):
        save_model(model, tmp_path / "itself", prep)
        return Teacher(ImageClassifier.from_pretrained(tmp_path / "itself"), prep, class_names, "itself")

    return make


def test_probe_views_are_stored_with_the_teachers_logits_on_the_same_pixels(tiny_data, tmp_path):
    features, model = _features("test_resnet", tiny_data, tmp_path, views=3, teacher=_itself_as_teacher(tmp_path))
    stored = features.training()
    assert stored.teacher_logits.shape == (3, SMALL_TRAIN, 4)
    with torch.no_grad():
        head = model.timm_model.get_classifier()(stored.views)
    assert torch.allclose(stored.teacher_logits, head, atol=1e-5)
    assert not torch.allclose(stored.teacher_logits[0], stored.teacher_logits[1])  # augmented views differ
    drawn = [stored[0] for _ in range(12)]  # each example carries the logits of the view it drew
    with torch.no_grad():
        for example in drawn:
            logits = model.timm_model.get_classifier()(example["pixel_values"][None])[0]
            assert torch.allclose(example["teacher_logits"], logits, atol=1e-5)


def test_probe_views_take_the_colour_jitter_moved_to_the_device(tiny_data, tmp_path):
    on_device = TransformArguments(color_jitter_on_device=True)
    jittered = _features("test_resnet", tiny_data, tmp_path, views=2, aug=on_device)[0].training()
    repeat = _features("test_resnet", tiny_data, tmp_path, views=2, aug=on_device)[0].training()
    assert torch.equal(jittered.views, repeat.views)  # its draws are seeded like the views' loaders
    geometry = _features("test_resnet", tiny_data, tmp_path, views=2, aug=on_device, jitter=False)[0].training()
    assert not torch.allclose(jittered.views, geometry.views)  # the same crops, jittered on the device


class _CountImages:
    """Counts the images that pass through ``ResNet.forward_features``."""

    def __init__(self, monkeypatch) -> None:
        self.images = 0
        original = timm.models.resnet.ResNet.forward_features

        def counted(module, x):
            self.images += x.shape[0]
            return original(module, x)

        monkeypatch.setattr(timm.models.resnet.ResNet, "forward_features", counted)


def _history(output) -> list[tuple]:
    log = json.loads((output / "stage1" / "trainer_state.json").read_text())["log_history"]
    return [(r["epoch"], round(r["eval_loss"], 6), r["eval_accuracy"]) for r in log if "eval_loss" in r]


@pytest.mark.slow
def test_a_frozen_stage_scores_as_the_whole_model_with_each_image_through_the_backbone_once(tmp_path, monkeypatch):
    before = _CountImages(monkeypatch)
    whole = train.main([*PROBE, "--frozen_features", "false", "--output_dir", str(tmp_path / "whole")])
    assert before.images == EPOCHS * (N_TRAIN + N_VALIDATION) + N_VALIDATION + N_TEST
    now = _CountImages(monkeypatch)
    head = train.main([*PROBE, "--output_dir", str(tmp_path / "head")])
    # Training still augments every step; validation and test run through the backbone once.
    assert now.images == CHECKED + EPOCHS * N_TRAIN + N_VALIDATION + N_TEST
    assert _history(tmp_path / "head") == _history(tmp_path / "whole")
    for key in ("test_accuracy", "test_loss", "test_macro_f1", "test_ece_calibrated"):
        assert head[key] == pytest.approx(whole[key], abs=1e-6), key


@pytest.mark.slow
def test_probe_views_train_the_head_alone_and_save_the_full_model(tmp_path, monkeypatch):
    counter = _CountImages(monkeypatch)
    output = tmp_path / "probe"
    metrics = train.main([*PROBE, "--probe_views", "2", "--output_dir", str(output)])
    assert counter.images == CHECKED + 2 * N_TRAIN + N_VALIDATION + N_TEST
    assert metrics["test_accuracy"] > 0.3  # chance is 0.25
    state = json.loads((output / "stage1" / "trainer_state.json").read_text())
    assert state["epoch"] == EPOCHS and any("train_accuracy" in r for r in state["log_history"])

    # The saved folder is the whole model: on the test images it scores what the features path scored.
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    test = _batch(_eval_split(load_data(args=parse_args((DataArguments,), TINY[:8])[0]).splits["test"], model))
    with torch.no_grad():
        predicted = model(pixel_values=test["pixel_values"]).logits.argmax(-1)
    assert (predicted == test["labels"]).double().mean().item() == pytest.approx(metrics["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--probe_views", "2"], "--freeze_backbone true"),
        (["--probe_views", "2", "--freeze_backbone", "true", "--frozen_features", "false"], "--frozen_features"),
        (["--probe_views", "2", "--freeze_backbone", "true", "--mixup_alpha", "0.2"], "mixup"),
        (["--probe_views", "-1"], "negative"),
    ],
)
def test_impossible_probe_options_are_refused_with_the_way_out(extra, message, tmp_path):
    with pytest.raises(ArgumentError, match=message):
        parse_args((FlowersTrainingArguments,), ["--output_dir", str(tmp_path), *extra])
