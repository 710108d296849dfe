"""--color_jitter_on_device: Albumentations' ColorJitter as batch operations on uint8 tensors. Each step gives
Albumentations' own result, the changes over many draws have the workers' distribution, the Trainer jitters training
batches only, and with the flag off nothing moves (all on CPU tensors: the same code runs on a GPU)."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from flowers_hf.core.errors import ArgumentError
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.batch_color import (
    BatchColorJitter,
    WithBatchJitter,
    _hsv8_to_rgb,
    _rgb_to_hsv8,
    build_batch_color_jitter,
    jitter,
)
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_train_transform, normalize_pixels

PREP = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
ON_DEVICE = TransformArguments(color_jitter_on_device=True)


def _photo(seed: int, size: int = 64) -> np.ndarray:
    """A smooth RGB image with a spread of hues, saturations and values, as a photo has. 64 px wide: OpenCV 4.14
    converts HSV to RGB in blocks of 32 or 64 pixels (AVX2, AVX-512) and a row's remainder otherwise (rounded, not
    truncated); training images are 224 px wide."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    hsv = np.stack([(x * 60 + rng.uniform(0, 120)) % 180, 90 + 120 * y, 80 + 150 * x * (1 - y / 2)], axis=-1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(int)
    return np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def one_thread():
    """torch on one thread: small batch operations on a shared CPU run faster than split over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _workers_jitter(seed: int) -> A.ColorJitter:
    """The ColorJitter step the training transform runs in the workers with the default strengths."""
    steps = build_train_transform(PREP, seed=seed, normalize=False).pipeline.transforms
    (step,) = [step for step in steps if isinstance(step, A.ColorJitter)]
    return step


def test_opencvs_8_bit_hsv_is_reproduced():
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(0)
    colours = np.concatenate([grid, rng.integers(0, 256, (140_672 - len(grid), 3))]).astype(np.uint8).reshape(-1, 64, 3)
    expected = cv2.cvtColor(colours, cv2.COLOR_RGB2HSV)
    hue, saturation, value = _rgb_to_hsv8(torch.from_numpy(colours).int().permute(0, 2, 1).unsqueeze(-1))
    ours = torch.stack([hue, saturation, value], dim=-1)[:, :, 0].numpy()
    assert np.array_equal(ours, expected)  # exactly
    back = _hsv8_to_rgb(hue, saturation, value)[..., 0].permute(0, 2, 1).numpy()
    difference = np.abs(back - cv2.cvtColor(expected, cv2.COLOR_HSV2RGB).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001


@pytest.mark.parametrize("step", ["brightness", "contrast", "saturation", "hue"])
def test_each_step_gives_albumentations_result_within_one_level(step):
    images = [_photo(seed) for seed in range(12)]
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 12, dtype=torch.float64)
    index = ["brightness", "contrast", "saturation", "hue"].index(step)
    factors[:, index] = torch.linspace(-0.05, 0.05, 12) if step == "hue" else torch.linspace(0.6, 1.4, 12)
    order = torch.tensor([[index] + [k for k in range(4) if k != index]] * 12)
    ours = jitter(_batch(images), factors, order, torch.ones(12, dtype=torch.bool)).permute(0, 2, 3, 1).numpy()
    reference = A.ColorJitter(p=1.0)
    for image, factor, out in zip(images, factors.tolist(), ours, strict=True):
        params = dict(zip(["brightness", "contrast", "saturation", "hue"], factor, strict=True))
        expected = reference.apply(image.copy(), **params, order=[0, 1, 2, 3])
        difference = np.abs(expected.astype(int) - out.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (step, factor, difference.max())
    if step != "hue":
        assert not np.array_equal(ours[0], images[0])  # the step did something


def test_the_four_steps_in_each_images_order_give_albumentations_result():
    images = [_photo(seed) for seed in range(40)]
    jitterer = build_batch_color_jitter(ON_DEVICE)
    factors, order, applied = jitterer.draw(40, torch.Generator().manual_seed(3))
    ours = jitter(_batch(images), factors, order, applied).permute(0, 2, 3, 1).numpy()
    reference = _workers_jitter(seed=0)
    differing = []
    for k, image in enumerate(images):
        if not applied[k]:
            assert np.array_equal(ours[k], image)
            continue
        params = dict(zip(["brightness", "contrast", "saturation", "hue"], factors[k].tolist(), strict=True))
        expected = reference.apply(image.copy(), **params, order=order[k].tolist())
        differing.append((expected != ours[k]).mean())
    # A level's difference from one step can move a later one (hue near grey): rare, never systematic.
    assert len(differing) > 20 and np.mean(differing) < 0.005


def test_the_draws_are_albumentations_draws():
    workers = _workers_jitter(seed=0)
    workers.set_random_seed(2)
    theirs = [workers.get_params() for _ in range(4000)]
    factors, order, applied = build_batch_color_jitter(ON_DEVICE).draw(4000, torch.Generator().manual_seed(2))
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(4000, 4))  # permutations
    for position in range(4):
        ours = torch.bincount(order[:, position], minlength=4) / 4000
        counted = np.bincount([params["order"][position] for params in theirs], minlength=4) / 4000
        assert np.abs(ours.numpy() - counted).max() < 0.05 and np.abs(counted - 0.25).max() < 0.04
    for k, name in enumerate(["brightness", "contrast", "saturation", "hue"]):
        drawn = np.array([params[name] for params in theirs])
        assert factors[:, k].min() >= drawn.min() - 0.01 and factors[:, k].max() <= drawn.max() + 0.01, name
        assert factors[:, k].mean().item() == pytest.approx(drawn.mean(), abs=0.01), name
    assert applied.double().mean().item() == pytest.approx(workers.p, abs=0.03)


def _changes(image: np.ndarray, out: np.ndarray) -> list[float]:
    """Brightness, contrast and saturation as ratios out/in, the hue shift in degrees, and whether unchanged."""
    gray_in, gray_out = (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(float) for a in (image, out))
    hsv_in, hsv_out = (cv2.cvtColor(a, cv2.COLOR_RGB2HSV).astype(float) for a in (image, out))
    coloured = hsv_in[..., 1] > 60
    shift = np.deg2rad(2 * (hsv_out[..., 0] - hsv_in[..., 0]))[coloured]
    return [
        gray_out.mean() / gray_in.mean(),
        gray_out.std() / gray_in.std(),
        hsv_out[..., 1].mean() / hsv_in[..., 1].mean(),
        float(np.rad2deg(np.arctan2(np.sin(shift).mean(), np.cos(shift).mean()))),
        float(np.array_equal(image, out)),
    ]


def test_the_changes_over_many_draws_have_the_workers_distribution(one_thread):
    images, draws = [_photo(seed) for seed in range(8)], 250
    workers = A.Compose([_workers_jitter(seed=0)], seed=1)
    cpu = np.array([_changes(image, workers(image=image)["image"]) for image in images for _ in range(draws)])
    jitterer = build_batch_color_jitter(ON_DEVICE)
    generator = torch.Generator().manual_seed(1)
    device = []
    for image in images:
        outs = jitterer(_batch([image] * draws), generator).permute(0, 2, 3, 1).numpy()
        device += [_changes(image, out) for out in outs]
    device = np.array(device)
    for k, name in enumerate(["brightness", "contrast", "saturation", "hue", "unchanged"]):
        error = np.sqrt(cpu[:, k].var() / len(cpu) + device[:, k].var() / len(device))
        assert abs(cpu[:, k].mean() - device[:, k].mean()) < 4 * error, name
        assert device[:, k].std() == pytest.approx(cpu[:, k].std(), rel=0.08), name
        spread = np.percentile(cpu[:, k], [90]) - np.percentile(cpu[:, k], [10])
        assert np.abs(np.percentile(cpu[:, k], [10, 90]) - np.percentile(device[:, k], [10, 90])).max() < 0.1 * spread
    assert cpu[:, 4].mean() == pytest.approx(0.2, abs=0.03)  # p = 0.8 on both paths
    assert cpu[:, 3].std() > 2  # the hue moved: the check can tell a missing step


def test_with_the_flag_off_the_workers_jitter_and_nothing_is_left_for_the_device():
    assert build_batch_color_jitter(TransformArguments()) is None
    assert (
        build_batch_color_jitter(TransformArguments(color_jitter_on_device=True, color_jitter=0, hue_jitter=0)) is None
    )
    off = build_train_transform(PREP, seed=0, normalize=False).pipeline.transforms
    on = build_train_transform(PREP, ON_DEVICE, seed=0, normalize=False).pipeline.transforms
    assert [type(t) for t in off] == [type(t) for t in on[:3]] + [A.ColorJitter, A.ToTensorV2]
    assert not any(isinstance(t, A.ColorJitter) for t in on)
    with pytest.raises(ValueError, match="normalize=False"):
        build_train_transform(PREP, ON_DEVICE, seed=0)
    with pytest.raises(ArgumentError, match="--augment strong"):
        TransformArguments(color_jitter_on_device=True, augment="strong")


def test_bad_batches_are_refused_and_one_image_is_jittered_for_showing():
    jitterer = build_batch_color_jitter(ON_DEVICE)
    with pytest.raises(TypeError, match="uint8"):
        jitterer(torch.zeros(2, 3, 8, 8))
    shown = WithBatchJitter(build_train_transform(PREP, ON_DEVICE, seed=0, normalize=False), jitterer)
    outs = [shown(_photo(0, size=40)) for _ in range(6)]
    assert all(out.dtype == torch.uint8 and out.shape == (3, 32, 32) for out in outs)
    assert len({out.float().mean().item() for out in outs}) > 1


def test_the_trainer_jitters_training_batches_on_the_device_and_leaves_evaluation_alone(tmp_path):
    from transformers import TrainingArguments

    from flowers_hf.model.arguments import ModelArguments
    from flowers_hf.model.modeling import build_model
    from flowers_hf.training.loss import WeightedCrossEntropy
    from flowers_hf.training.trainer import ClassWeightedTrainer

    model = build_model(ModelArguments(model="test_resnet", pretrained=False), ["a", "b", "c"])
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    jitterer = BatchColorJitter((0.5, 1.5), (0.5, 1.5), (0.5, 1.5), (-0.1, 0.1), p=1.0)
    trainer = ClassWeightedTrainer(
        model=model, args=args, loss=WeightedCrossEntropy(), prep=PREP, batch_augment=jitterer
    )
    pixels = _batch([_photo(seed, size=32) for seed in range(4)])
    torch.manual_seed(5)
    expected = jitterer(pixels)
    torch.manual_seed(5)  # the draws come from torch's generator, which the Trainer seeds and checkpoints
    batches, _ = trainer.get_batch_samples(iter([{"pixel_values": pixels, "labels": torch.arange(4) % 3}]), 1, "cpu")
    assert torch.equal(batches[0]["pixel_values"], expected) and not torch.equal(expected, pixels)
    inputs = trainer._prepare_inputs(batches[0])["pixel_values"]  # then normalised, once
    assert torch.equal(inputs, normalize_pixels(expected, PREP.mean, PREP.std))
    evaluation = trainer._prepare_inputs({"pixel_values": pixels})["pixel_values"]  # prediction: not jittered
    assert torch.equal(evaluation, normalize_pixels(pixels, PREP.mean, PREP.std))
    features = torch.randn(4, 16)  # a frozen backbone's features: passed through
    batches, _ = trainer.get_batch_samples(iter([{"pixel_values": features, "labels": torch.arange(4) % 3}]), 1, "cpu")
    assert torch.equal(batches[0]["pixel_values"], features)


def test_train_py_moves_the_jitter_to_its_trainer_and_trains(tmp_path):
    import dataclasses

    from flowers_hf.core.cli import parse_args
    from flowers_hf.train import ARGUMENTS, prepare

    tiny = [
        "--dataset", "synthetic", "--synthetic_num_classes", "3", "--synthetic_images_per_class", "8",
        "--synthetic_image_size", "40", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
        "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--report_to", "none",
        "--disable_tqdm", "true", "--output_dir", str(tmp_path),
    ]  # fmt: skip
    for flag, device_part in (("false", None), ("true", BatchColorJitter)):
        arguments = parse_args(ARGUMENTS, [*tiny, "--color_jitter_on_device", flag])
        run = prepare(arguments)
        workers = run.data.splits["train"].format["format_kwargs"]["transform"].transform.pipeline.transforms
        jitters_in_workers = any(isinstance(step, A.ColorJitter) for step in workers)
        assert jitters_in_workers == (device_part is None)
        if device_part is None:
            assert run.data.batch_augment is None and run.make_trainer(args=arguments[-1]).batch_augment is None
            continue
        assert isinstance(run.data.batch_augment, device_part)
        assert isinstance(run.data.train_transform, WithBatchJitter)  # the samples plot shows the whole augmentation
        args = dataclasses.replace(
            arguments[-1], max_steps=2, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
            early_stopping_patience=0,
        )  # fmt: skip
        trainer = run.make_trainer(args=args)
        assert trainer.batch_augment is run.data.batch_augment
        before = run.model.timm_model.get_classifier().weight.detach().clone()
        trainer.train()
        assert not torch.equal(run.model.timm_model.get_classifier().weight.detach(), before)
