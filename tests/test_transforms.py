import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw
from transformers import TimmWrapperImageProcessor, default_data_collator

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import (
    BatchTransform,
    build_eval_transform,
    build_train_transform,
    collate_fn,
    with_transforms,
)


def _photo_like(width: int = 500, height: int = 375, seed: int = 0) -> Image.Image:
    """Smooth colour fields with sharp-edged shapes and sensor noise: hard for resampling differences."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(5, 60)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noisy = np.asarray(image) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("model", ["resnet18", "efficientnet_b3", "test_resnet"])
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 333)])
def test_eval_transform_matches_timm_and_transformers(model, size):
    pretrained_cfg = timm.get_pretrained_cfg(model).to_dict()
    prep = resolve_preprocessing(model)
    image = _photo_like(*size)
    ours = build_eval_transform(prep)(image)
    processor = TimmWrapperImageProcessor(pretrained_cfg=pretrained_cfg)
    reference = processor(image)["pixel_values"][0]
    assert ours.shape == reference.shape == (3, *prep.input_size)
    assert (ours - reference).abs().max().item() < 1e-4


def test_efficientnet_b3_uses_its_own_input_size_not_224():
    prep = resolve_preprocessing("efficientnet_b3")
    assert prep.input_size == (288, 288)
    assert prep.crop_pct == 0.875
    assert prep.interpolation == "bicubic"


def test_overrides_replace_the_model_values_and_still_match_timm():
    overrides = TransformArguments(
        image_size=300, crop_pct=0.9, interpolation="bilinear", mean=[0.5] * 3, std=[0.25] * 3
    )
    prep = resolve_preprocessing("efficientnet_b3", overrides)
    assert prep == Preprocessing((300, 300), 0.9, "center", "bilinear", (0.5,) * 3, (0.25,) * 3)
    image = _photo_like()
    reference = timm.data.create_transform(**prep.to_timm_data_config(), is_training=False)(image)
    assert (build_eval_transform(prep)(image) - reference).abs().max().item() < 1e-4


def test_squash_crop_mode_matches_timm():
    prep = Preprocessing((64, 48), 0.8, "squash", "bicubic", (0.5,) * 3, (0.5,) * 3)
    image = _photo_like(200, 150)
    reference = timm.data.create_transform(**prep.to_timm_data_config(), is_training=False)(image)
    assert (build_eval_transform(prep)(image) - reference).abs().max().item() < 1e-4


def test_a_model_instance_gives_its_data_config():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    assert resolve_preprocessing(model) == resolve_preprocessing("test_resnet")


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="not a timm architecture"):
        resolve_preprocessing("no_such_net")


def test_train_transform_output_shape_dtype_and_range():
    prep = resolve_preprocessing("test_resnet")  # mean = std = 0.5: normalised values lie in [-1, 1]
    transform = build_train_transform(prep, seed=0)
    for _ in range(5):
        out = transform(_photo_like())
        assert out.shape == (3, 160, 160)
        assert out.dtype == torch.float32
        assert out.min().item() >= -1.0 - 1e-6 and out.max().item() <= 1.0 + 1e-6
        assert out.std().item() > 0.05  # an image, not a constant


def test_train_transform_is_random_but_reproducible_with_a_seed():
    prep = resolve_preprocessing("test_resnet")
    image = _photo_like()
    first = build_train_transform(prep, seed=7)
    second = build_train_transform(prep, seed=7)
    a, b = first(image), first(image)
    assert not torch.equal(a, b)
    assert torch.equal(second(image), a)


def test_augmentation_can_be_turned_off_down_to_a_resize():
    prep = Preprocessing((32, 32), 1.0, "center", "bilinear", (0.0,) * 3, (1.0,) * 3)
    plain = TransformArguments(
        min_crop_scale=1.0, hflip_prob=0.0, rotate_prob=0.0, color_jitter=0.0, hue_jitter=0.0, color_jitter_prob=0.0
    )
    image = Image.new("RGB", (64, 64), (255, 0, 0))
    out = build_train_transform(prep, plain, seed=0)(image)
    assert torch.allclose(out[0], torch.ones(32, 32)) and torch.allclose(out[1:], torch.zeros(2, 32, 32))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_any_image_mode_goes_through_both_transforms(mode):
    prep = resolve_preprocessing("test_resnet")
    image = Image.new(mode, (90, 70))
    for transform in (build_train_transform(prep, seed=0), build_eval_transform(prep)):
        out = transform(image)
        assert out.shape == (3, 160, 160)
        assert torch.isfinite(out).all()


def test_datasets_get_pixel_values_and_labels_ready_for_the_trainer(tiny_synthetic):
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    data = with_transforms(tiny_synthetic, build_train_transform(prep, seed=0), build_eval_transform(prep))
    example = data["train"][0]
    assert set(example) == {"pixel_values", "labels"}
    assert example["pixel_values"].shape == (3, 32, 32)
    assert example["labels"].item() == tiny_synthetic["train"][0]["label"]
    # Evaluation splits are deterministic, training is augmented.
    assert torch.equal(data["test"][3]["pixel_values"], data["test"][3]["pixel_values"])
    assert not torch.equal(data["train"][1]["pixel_values"], data["train"][1]["pixel_values"])
    # No transformed copy is written: the underlying table still holds the encoded images.
    assert data["train"].data.column_names == ["image", "label"]
    loader = torch.utils.data.DataLoader(data["test"], batch_size=5, collate_fn=collate_fn)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (5, 3, 32, 32)
    assert batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == tiny_synthetic["test"]["label"][:5]
    same = default_data_collator([data["test"][i] for i in range(5)])
    assert torch.equal(same["pixel_values"], batch["pixel_values"]) and torch.equal(same["labels"], batch["labels"])


def test_dataloader_workers_do_not_augment_in_lockstep(tiny_synthetic):
    prep = Preprocessing((24, 24), 1.0, "center", "bilinear", (0.0,) * 3, (1.0,) * 3)
    same_image = tiny_synthetic["train"].select([0] * 8)
    data = same_image.with_transform(BatchTransform(build_train_transform(prep, seed=0)))
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate_fn)
    first, second = list(loader)  # one batch from each worker, of the same image
    assert not torch.equal(first["pixel_values"], second["pixel_values"])


def test_batch_transform_works_without_labels():
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=16))
    out = BatchTransform(build_eval_transform(prep))({"image": [Image.new("RGB", (20, 20))] * 2})
    assert set(out) == {"pixel_values"} and out["pixel_values"].shape == (2, 3, 16, 16)


def test_a_batch_without_images_says_how_to_keep_them():
    prep = resolve_preprocessing("test_resnet")
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        BatchTransform(build_eval_transform(prep))({"label": [0, 1]})


def test_the_eval_steps_are_timms_eval_transform_by_name():
    from timm.data import create_transform

    from flowers_hf.data.transforms import eval_steps

    prep = resolve_preprocessing("resnet18", TransformArguments(image_size=48))
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    steps = eval_steps(prep)
    timm_eval = create_transform(**prep.to_timm_data_config(), is_training=False)
    assert torch.equal(steps.to_float(steps.crop(steps.resize(image))), timm_eval(image))
    assert steps.resize(image).size[1] == int(48 / prep.crop_pct)  # timm floors the shorter side, before the crop
    assert steps.to_uint8(steps.crop(steps.resize(image))).dtype == torch.uint8
