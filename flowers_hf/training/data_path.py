"""train.py's data path: the checked splits decoded once (``--cache_images``), the transforms attached (with
``--color_jitter_on_device`` the colour jitter taken out of the workers, for the Trainer to do on the device), the
class weights from the training split's label counts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import torch

from flowers_hf.data import label_counts
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.batch_color import BatchColorJitter, WithBatchJitter, build_batch_color_jitter
from flowers_hf.data.cache import cache_splits
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import (
    BatchTransform,
    ImageTransform,
    build_eval_transform,
    build_train_transform,
    with_transforms,
)
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.loss import class_weights_from_counts

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The splits as training reads them.

    Attributes:
        raw: the checked splits, untransformed (the run folder's reports read them).
        splits: the training split with the training transform, every other split with the eval transform; uint8
            tensors out, normalised on the device by the Trainer.
        train_plain: the training split with the eval transform (the frozen backbone's unaugmented features).
        train_transform: the whole training augmentation of one image, the device's part included (the
            augmentation samples plot shows it).
        class_weights: the loss weights per class, or ``None``.
        batch_augment: with ``--color_jitter_on_device``, the colour jitter of the uint8 training batches on the
            device (the workers then do the geometry only); else ``None``.
    """

    raw: datasets.DatasetDict
    splits: datasets.DatasetDict
    train_plain: datasets.Dataset
    train_transform: ImageTransform
    class_weights: torch.Tensor | None
    batch_augment: BatchColorJitter | None = None

    @property
    def class_names(self) -> list[str]:
        return self.raw["train"].features["label"].names


def training_data(
    raw: datasets.DatasetDict,
    prep: Preprocessing,
    data_args: DataArguments,
    transform_args: TransformArguments,
    args: FlowersTrainingArguments,
) -> TrainingData:
    """Every image decoded once (``--cache_images``: on the main process first), uint8 tensors out of the workers.

    Args:
        raw: the checked splits.
        prep: the model's input contract.
        data_args: ``--cache_images``.
        transform_args: the augmentation strengths.
        args: the seed, the workers and ``--class_weights``.
    """
    train_transform = build_train_transform(prep, transform_args, seed=args.seed, normalize=False)
    batch_augment = build_batch_color_jitter(transform_args)
    with args.main_process_first(desc="decoding the images once"):
        splits = cache_splits(raw, prep, args.dataloader_num_workers or None) if data_args.cache_images else raw
    eval_transform = build_eval_transform(prep, normalize=False, cropped=data_args.cache_images)
    train_plain = splits["train"].with_transform(BatchTransform(build_eval_transform(prep, normalize=False)))
    names = raw["train"].features["label"].names
    weights = class_weights_from_counts(label_counts(raw["train"], len(names)), args.class_weights)
    shown = train_transform if batch_augment is None else WithBatchJitter(train_transform, batch_augment)
    splits = with_transforms(splits, train_transform, eval_transform)
    return TrainingData(raw, splits, train_plain, shown, weights, batch_augment)
