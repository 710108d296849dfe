"""train.py's data path: images decoded once (the cache), uint8 tensors out of the workers, normalised on the device
with exactly the eval transform's arithmetic, the same augmentation draws as the float path."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.cache import cache_splits
from flowers_hf.data.mixup import build_mixer
from flowers_hf.data.pixels import encode_ppm, rgb_array
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import (
    BatchTransform,
    build_eval_transform,
    build_train_transform,
    normalize_pixels,
    with_transforms,
)

PREP = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))


def _photo(width: int = 71, height: int = 53, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_uint8_eval_input_normalised_on_the_device_equals_the_eval_transform_bit_for_bit():
    image = _photo()
    pixels = build_eval_transform(PREP, normalize=False)(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32)
    assert torch.equal(normalize_pixels(pixels, PREP.mean, PREP.std), build_eval_transform(PREP)(image))
    batch = torch.stack([pixels, pixels])
    assert torch.equal(normalize_pixels(batch, PREP.mean, PREP.std)[1], build_eval_transform(PREP)(image))
    with pytest.raises(TypeError, match="uint8"):
        normalize_pixels(pixels.float(), PREP.mean, PREP.std)


def test_cached_splits_give_the_eval_transforms_inputs_of_the_originals_bit_for_bit(tiny_synthetic):
    cached = cache_splits(tiny_synthetic, PREP)
    data = with_transforms(cached, build_train_transform(PREP, seed=0, normalize=False),
                           build_eval_transform(PREP, normalize=False, cropped=True))  # fmt: skip
    for split in ("validation", "test"):
        for index in (0, len(cached[split]) - 1):
            original = build_eval_transform(PREP)(tiny_synthetic[split][index]["image"])
            cached_pixels = data[split][index]["pixel_values"]
            assert cached_pixels.dtype == torch.uint8
            assert torch.equal(normalize_pixels(cached_pixels, PREP.mean, PREP.std), original)
            # Normalised on the CPU (evaluate.py, the audit): the same floats.
            assert torch.equal(build_eval_transform(PREP, cropped=True)(cached[split][index]["image"]), original)
    # Training images are kept at 1.15x the input size (never enlarged), decoded once, read back as arrays.
    stored = rgb_array(cached["train"][0]["image"])
    assert min(stored.shape[:2]) == min(min(tiny_synthetic["train"][0]["image"].size), 37)


def test_the_decoded_copy_is_read_as_arrays_with_no_pil_decoding(tiny_synthetic, monkeypatch):
    cached = cache_splits(tiny_synthetic, PREP)
    data = with_transforms(cached, build_train_transform(PREP, seed=0, normalize=False),
                           build_eval_transform(PREP, normalize=False, cropped=True))  # fmt: skip
    plain = cached["train"].with_transform(BatchTransform(build_eval_transform(PREP, normalize=False)))

    def decoding(*args, **kwargs):
        raise AssertionError("an image of the copy was decoded with PIL")

    monkeypatch.setattr(Image, "open", decoding)
    assert data["train"][:4]["pixel_values"].shape == (4, 3, 32, 32)
    assert data["validation"][:4]["pixel_values"].shape == (4, 3, 32, 32)
    assert plain[:4]["pixel_values"].shape == (4, 3, 32, 32)  # the frozen backbone's unaugmented features


def test_stored_bytes_are_read_as_a_view_and_anything_else_as_pil_decodes_it():
    image = _photo(9, 7)
    stored = encode_ppm(image)
    pixels = rgb_array(stored)
    assert np.array_equal(pixels, np.asarray(image)) and not pixels.flags.writeable  # a view of the bytes
    png = io.BytesIO()
    image.convert("L").save(png, format="PNG")
    grey = rgb_array({"bytes": png.getvalue(), "path": None})  # not the copy's: decoded, made RGB
    assert grey.shape == (7, 9, 3) and np.array_equal(grey, np.asarray(image.convert("L").convert("RGB")))
    assert rgb_array(pixels) is pixels and np.array_equal(rgb_array(image.convert("RGBA")), pixels)
    with pytest.raises(ValueError, match="HWC uint8 RGB"):
        rgb_array(pixels[..., 0])
    # An image at the input size can leave the training transform uncropped and unchanged: its tensor must not
    # be the stored bytes, which are read-only.
    at_size = encode_ppm(_photo(32, 32))
    unchanged = TransformArguments(min_crop_scale=1.0, hflip_prob=0, rotate_prob=0, color_jitter=0, hue_jitter=0)
    out = build_train_transform(PREP, unchanged, normalize=False)(at_size)
    assert torch.equal(out, torch.from_numpy(rgb_array(at_size).copy()).permute(2, 0, 1))
    out.add_(1)
    assert torch.equal(out, torch.from_numpy(rgb_array(at_size).copy()).permute(2, 0, 1) + 1)  # bytes untouched


def test_the_cache_is_reused_for_the_same_source_and_size_and_rebuilt_for_another_size(tiny_synthetic):
    first, again = cache_splits(tiny_synthetic, PREP), cache_splits(tiny_synthetic, PREP)
    assert first["test"].cache_files and first["test"].cache_files == again["test"].cache_files
    other = cache_splits(tiny_synthetic, resolve_preprocessing("test_resnet", TransformArguments(image_size=24)))
    assert other["test"].cache_files != first["test"].cache_files
    assert rgb_array(other["test"][0]["image"]).shape == (24, 24, 3)


def test_the_uint8_training_path_draws_the_same_augmentations_as_the_float_one():
    image = _photo(90, 60, seed=3)
    floats = build_train_transform(PREP, seed=7)
    uint8 = build_train_transform(PREP, seed=7, normalize=False)
    for _ in range(5):
        expected, pixels = floats(image), uint8(image)
        assert pixels.dtype == torch.uint8
        torch.testing.assert_close(normalize_pixels(pixels, PREP.mean, PREP.std), expected, atol=1e-5, rtol=0)


def test_training_batches_are_normalised_once_on_the_device_then_mixed(tmp_path):
    from transformers import TrainingArguments

    from flowers_hf.model.arguments import ModelArguments
    from flowers_hf.model.modeling import build_model
    from flowers_hf.training.loss import WeightedCrossEntropy
    from flowers_hf.training.trainer import ClassWeightedTrainer

    model = build_model(ModelArguments(model="test_resnet", pretrained=False), ["a", "b", "c"])
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    mixer = build_mixer(3, mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.0)  # prob 0: not mixed, targets made soft
    trainer = ClassWeightedTrainer(model=model, args=args, loss=WeightedCrossEntropy(), prep=PREP, mixer=mixer)
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    batches, _ = trainer.get_batch_samples(iter([{"pixel_values": pixels, "labels": torch.arange(4) % 3}]), 1, "cpu")
    assert batches[0]["pixel_values"].dtype == torch.float32 and batches[0]["labels"].shape == (4, 3)
    assert torch.equal(batches[0]["pixel_values"], normalize_pixels(pixels, PREP.mean, PREP.std))
    again = trainer._prepare_inputs(batches[0])["pixel_values"]  # the step's own pass leaves it as it is
    assert torch.equal(again, batches[0]["pixel_values"])


def test_the_trainer_feeds_the_model_normalised_pixels(tmp_path):
    from transformers import TrainingArguments

    from flowers_hf.model.arguments import ModelArguments
    from flowers_hf.model.modeling import build_model
    from flowers_hf.training.loss import WeightedCrossEntropy
    from flowers_hf.training.trainer import ClassWeightedTrainer

    model = build_model(ModelArguments(model="test_resnet", pretrained=False), ["a", "b", "c"]).eval()
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = ClassWeightedTrainer(model=model, args=args, loss=WeightedCrossEntropy(), prep=PREP, channels_last=True)
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    inputs = trainer._prepare_inputs({"pixel_values": pixels, "labels": torch.tensor([0, 1])})
    assert inputs["pixel_values"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(inputs["pixel_values"], normalize_pixels(pixels, PREP.mean, PREP.std))
    plain = ClassWeightedTrainer(model=model, args=args, loss=WeightedCrossEntropy())
    with pytest.raises(ValueError, match="mean and std"):
        plain._prepare_inputs({"pixel_values": pixels})
    floats = torch.randn(2, 3, 32, 32)
    assert torch.equal(plain._prepare_inputs({"pixel_values": floats})["pixel_values"], floats)  # left alone


def test_a_bf16_training_step_runs_under_cpu_autocast_on_uint8_batches(tiny_synthetic, tmp_path):
    from flowers_hf.model.arguments import ModelArguments
    from flowers_hf.model.modeling import build_model
    from flowers_hf.training.arguments import FlowersTrainingArguments
    from flowers_hf.training.trainer import build_trainer

    names = tiny_synthetic["train"].features["label"].names
    model = build_model(ModelArguments(model="test_resnet", pretrained=False), names)
    data = with_transforms(tiny_synthetic, build_train_transform(PREP, seed=0, normalize=False),
                           build_eval_transform(PREP, normalize=False))  # fmt: skip
    args = FlowersTrainingArguments(
        output_dir=str(tmp_path), precision="bf16", max_steps=2, per_device_train_batch_size=4, report_to=[],
        dataloader_num_workers=0, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
        early_stopping_patience=0, disable_tqdm=True,
    )  # fmt: skip
    assert args.bf16 and args.use_cpu
    seen = []
    model.timm_model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = model.timm_model.get_classifier().weight.detach().clone()
    build_trainer(args, model, data["train"], data["validation"], None, prep=PREP).train()
    assert seen and set(seen) == {torch.bfloat16}  # autocast on the CPU
    assert not torch.equal(model.timm_model.get_classifier().weight.detach(), before)  # and it learned
