"""On-the-fly image transforms: Albumentations for training, timm's own eval transform for everything else."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import datasets
import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.pixels import ImageInput, rgb_array, to_pil
from flowers_hf.data.preprocessing import Preprocessing

_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}

# A transform takes a PIL image, an HWC uint8 RGB array or the decoded copy's undecoded row (``pixels.ImageInput``).
ImageTransform = Callable[[ImageInput], torch.Tensor]


def build_train_transform(
    prep: Preprocessing, aug: TransformArguments | None = None, seed: int | None = None, normalize: bool = True
) -> ImageTransform:
    """Random resized crop, flip, rotation and colour jitter (with ``--augment strong`` also the shifts between real
    photographs), then normalisation, as an ``image -> tensor`` function on PIL images or HWC uint8 arrays.

    Args:
        prep: the model's input contract.
        aug: augmentation strengths; defaults if ``None``. With ``color_jitter_on_device`` the colour jitter is
            left out, for ``BatchColorJitter`` to do on the uint8 batches (``normalize`` must then be ``False``).
        seed: seed of Albumentations' own random state; DataLoader workers reseed from torch's worker seed,
            which the Trainer derives from its own seed.
        normalize: ``False`` returns the uint8 CHW tensor before normalisation, which ``normalize_pixels`` then
            does on the device (``train.py``'s data path: workers do less, batches take a quarter of the memory).
            The random draws are the same either way.
    """
    aug = aug or TransformArguments()
    if aug.color_jitter_on_device and normalize:
        raise ValueError("color_jitter_on_device jitters the uint8 batches on the device: build with normalize=False")
    interpolation = _CV2_INTERPOLATION[prep.interpolation]
    steps: list[A.BasicTransform] = [
        # Area resampling when the crop shrinks, as PIL's antialiased resize does in eval.
        A.RandomResizedCrop(
            size=prep.input_size,
            scale=(aug.min_crop_scale, 1.0),
            interpolation=interpolation,
            area_for_downscale="image",
        ),
        A.HorizontalFlip(p=aug.hflip_prob),
        # Rotating after the crop touches input-size pixels only; reflection avoids black corners.
        A.Rotate(
            limit=aug.rotate_degrees, interpolation=interpolation, border_mode=cv2.BORDER_REFLECT_101, p=aug.rotate_prob
        ),
    ]
    if (aug.color_jitter > 0 or aug.hue_jitter > 0) and not aug.color_jitter_on_device:
        strength = (max(0.0, 1 - aug.color_jitter), 1 + aug.color_jitter)
        steps.append(
            A.ColorJitter(
                brightness=strength, contrast=strength, saturation=strength, hue=aug.hue_jitter, p=aug.color_jitter_prob
            )
        )
    if aug.augment == "strong":
        steps += _photo_shift_steps(prep)
    if normalize:
        steps.append(A.Normalize(mean=prep.mean, std=prep.std, max_pixel_value=255.0))
    steps.append(A.ToTensorV2())
    return _AlbumentationsTransform(A.Compose(steps, seed=seed), prep.input_size)


def _photo_shift_steps(prep: Preprocessing) -> list[A.BasicTransform]:
    """``--augment strong``: how real photographs of one flower differ, each applied to a share of the images.

    Viewpoint, exposure, white balance, focus and camera shake, sensor noise, JPEG, occlusion (random erasing,
    Zhong et al. 2020). Hue stays with ``--hue_jitter``: colour tells flowers apart.
    """
    interpolation = _CV2_INTERPOLATION[prep.interpolation]
    blur = max(3, min(prep.input_size) // 32 | 1)  # odd kernel of about 3 % of the side: 3 px at 64, 7 at 224
    return [
        A.Perspective(scale=(0.02, 0.06), interpolation=interpolation, border_mode=cv2.BORDER_REFLECT_101, p=0.3),
        A.OneOf([A.RandomBrightnessContrast(0.25, 0.25), A.RandomGamma((70, 150))], p=0.5),
        A.PlanckianJitter(mode="blackbody", p=0.3),  # the colour temperature of the light
        A.OneOf([A.GaussianBlur(blur_limit=(3, blur)), A.MotionBlur(blur_limit=(3, blur))], p=0.3),
        A.OneOf([A.GaussNoise(std_range=(0.02, 0.1)), A.ISONoise()], p=0.3),
        A.ImageCompression(quality_range=(30, 90), p=0.3),
        A.Erasing(scale=(0.02, 0.2), fill="random", p=0.25),
    ]


@dataclass(frozen=True)
class EvalSteps:
    """timm's eval transform for a model (``timm.data.create_transform(is_training=False)``, what
    ``TimmWrapperImageProcessor`` and ``pipeline`` apply), its steps by name, built once by :func:`eval_steps`.

    Attributes:
        resize: the shorter side to ``input_size / crop_pct`` (RGB PIL image in and out).
        crop: the centre crop to the input size.
        to_uint8: the uint8 CHW tensor (``normalize_pixels`` then gives exactly ``to_float``'s result).
        to_float: the normalised float CHW tensor.
    """

    resize: Callable[[Image.Image], Image.Image]
    crop: Callable[[Image.Image], Image.Image]
    to_uint8: Callable[[Image.Image], torch.Tensor]
    to_float: Callable[[Image.Image], torch.Tensor]


def eval_steps(prep: Preprocessing) -> EvalSteps:
    """The named steps of timm's eval transform for ``prep``: the one eval pipeline, which the eval transform, TTA,
    the corruption suite, the decoded cache and the demo take their parts from.

    Args:
        prep: the model's input contract.
    """
    steps = create_transform(**prep.to_timm_data_config(), is_training=False).transforms
    kinds = (transforms.Resize, transforms.CenterCrop, transforms.ToTensor, transforms.Normalize)
    if len(steps) != len(kinds) or not all(isinstance(step, kind) for step, kind in zip(steps, kinds, strict=True)):
        # timm 1.0.31 builds exactly these four steps for a centre-cropped eval transform.
        raise TypeError(f"timm's eval transform is not resize, centre crop, to tensor, normalise: {steps}")
    resize, crop, to_tensor, normalize = steps
    return EvalSteps(resize, crop, transforms.PILToTensor(), transforms.Compose([to_tensor, normalize]))


def build_eval_transform(prep: Preprocessing, normalize: bool = True, cropped: bool = False) -> ImageTransform:
    """timm's eval transform for ``prep`` (resize, centre crop, to tensor, normalise), after ``to_rgb``.

    Args:
        prep: the model's input contract.
        normalize: ``False`` stops at the uint8 CHW tensor; ``normalize_pixels`` then gives exactly the rest.
        cropped: the images were resized and centre-cropped already (``eval_crop``, as the decoded cache stores
            them): only the tensor step remains, done on the array (no PIL image), with the same result.
    """
    if cropped:
        return _CroppedToTensor(prep.input_size, prep if normalize else None)
    steps = eval_steps(prep)
    tensor = steps.to_float if normalize else steps.to_uint8
    return _RGBTransform(transforms.Compose([steps.resize, steps.crop, tensor]))


def eval_crop(prep: Preprocessing) -> transforms.Compose:
    """timm's eval resize and centre crop for ``prep``: what the eval transform does before the tensor step."""
    steps = eval_steps(prep)
    return transforms.Compose([steps.resize, steps.crop])


def normalize_pixels(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 CHW pixels (or a batch of them) as the model's float input, on their device: torchvision's
    ``to_tensor`` then ``normalize``, the same operations in the same order, so the result equals the eval
    transform's bit for bit.

    Args:
        pixels: uint8 tensor, channels first.
        mean: per-channel mean of the model's data config.
        std: per-channel standard deviation.
    """
    if pixels.dtype != torch.uint8:
        raise TypeError(f"normalize_pixels takes uint8 pixels, got {pixels.dtype}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
    return pixels.to(torch.float32).div(255).sub_(mean_t).div_(std_t)


class ModelInput:
    """Image batches as the model's input, on their device: uint8 pixels normalised (``normalize_pixels``), in
    channels_last memory if asked. The one place pixels are normalised: the Trainer's batches (training, evaluation,
    prediction) and the frozen backbone's feature pass go through it; workers and collators send uint8. Float
    batches (normalised already) and feature vectors pass unchanged.

    Args:
        prep: the model's input contract (its mean and std); ``None`` where only float batches come.
        channels_last: image batches in channels_last memory format.
    """

    def __init__(self, prep: Preprocessing | None, channels_last: bool = False) -> None:
        self.prep = prep
        self.channels_last = channels_last

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype == torch.uint8:
            if self.prep is None:
                raise ValueError("uint8 pixel_values need the model's mean and std: pass prep")
            pixels = normalize_pixels(pixels, self.prep.mean, self.prep.std)
        if self.channels_last and pixels.dim() == 4:  # not a frozen backbone's features
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels


def denormalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``(x - mean) / std`` on a CHW tensor: an HWC float array clipped to [0, 1], ready for ``imshow``; a
    uint8 tensor (not normalised yet: ``normalize=False``) is scaled to [0, 1].

    Args:
        tensor: normalised image, channels first.
        mean: per-channel mean used to normalise.
        std: per-channel standard deviation used to normalise.
    """
    if tensor.dtype == torch.uint8:
        return tensor.detach().cpu().numpy().transpose(1, 2, 0) / 255.0
    array = tensor.detach().cpu().double().numpy().transpose(1, 2, 0)
    return np.clip(array * np.asarray(std) + np.asarray(mean), 0.0, 1.0)


class _AlbumentationsTransform:
    def __init__(self, pipeline: A.Compose, input_size: tuple[int, int]) -> None:
        self.pipeline = pipeline
        self.input_size = tuple(input_size)
        self._seeded_for: tuple[int, int | None] | None = None

    def __call__(self, image: ImageInput) -> torch.Tensor:
        self._reseed_in_worker()
        pixels = rgb_array(image)
        if not pixels.flags.writeable and pixels.shape[:2] == self.input_size:
            # Albumentations 2.0.8 returns the image itself from a crop that needs no resize, and ToTensorV2 would
            # then wrap the stored bytes, which are read-only; only an image at the input size can take that path.
            pixels = pixels.copy()
        return self.pipeline(image=pixels)["image"]

    def _reseed_in_worker(self) -> None:
        # Albumentations 2.0.8 keeps its random state inside Compose; forked DataLoader workers would all
        # copy the same state and augment in lockstep. Reseed from torch's per-worker (per-epoch) seed.
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), info.seed if info else None)
        if info is not None and key != self._seeded_for:
            self.pipeline.set_random_seed(info.seed % 2**32)
        self._seeded_for = key


class _RGBTransform:
    """``transform`` of the image as an RGB PIL image (``to_rgb``; arrays wrapped): a picklable wrapper, so
    DataLoader workers can take it."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return self.transform(to_pil(image))


class _CroppedToTensor:
    """The eval transform's tensor step on an image cropped to ``size`` already (the decoded cache's centre crops),
    from its array: ``PILToTensor``'s uint8 CHW tensor, normalised with ``prep``'s mean and std by
    ``normalize_pixels`` (``to_float``'s result bit for bit) when ``prep`` is given."""

    def __init__(self, size: tuple[int, int], prep: Preprocessing | None) -> None:
        self.size = tuple(size)
        self.prep = prep

    def __call__(self, image: ImageInput) -> torch.Tensor:
        pixels = rgb_array(image)
        if pixels.shape[:2] != self.size:
            raise ValueError(f"expected an image cropped to {self.size} (height, width), got {pixels.shape[:2]}")
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # a copy: the bytes are read-only
        return tensor if self.prep is None else normalize_pixels(tensor, self.prep.mean, self.prep.std)


class BatchTransform:
    """``datasets`` batch transform: images and labels in, ``pixel_values`` and ``labels`` tensors out.

    Use with ``Dataset.set_transform``/``with_transform``. The Trainer must keep the ``image`` column for
    it: ``TrainingArguments(remove_unused_columns=False)``.
    """

    def __init__(self, transform: ImageTransform) -> None:
        self.transform = transform

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, torch.Tensor]:
        if "image" not in batch:
            raise KeyError(
                f"the batch has no 'image' column (only {sorted(batch)}); the Trainer removes it unless "
                "TrainingArguments(remove_unused_columns=False)"
            )
        pixel_values = torch.stack([self.transform(image) for image in batch["image"]])
        output = {"pixel_values": pixel_values}
        if "label" in batch:
            output["labels"] = torch.as_tensor(batch["label"], dtype=torch.long)
        return output


def with_transforms(
    data: datasets.DatasetDict, train: ImageTransform, evaluate: ImageTransform
) -> datasets.DatasetDict:
    """Attach ``train`` to the ``train`` split and ``evaluate`` to every other split (no copy is written).

    Args:
        data: splits with ``image`` and ``label`` columns.
        train: the training transform (``build_train_transform``).
        evaluate: the eval transform (``build_eval_transform``).
    """
    train_batches, eval_batches = BatchTransform(train), BatchTransform(evaluate)
    return datasets.DatasetDict(
        {name: split.with_transform(train_batches if name == "train" else eval_batches) for name, split in data.items()}
    )


def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples from a transformed split into a batch (for a DataLoader or the Trainer): each key of the
    examples (``pixel_values``, ``labels``, a teacher's stored ``teacher_logits``) becomes one tensor."""
    return {key: torch.stack([torch.as_tensor(example[key]) for example in examples]) for key in examples[0]}
