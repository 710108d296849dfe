"""A frozen backbone's features, computed once: while only the classifier trains (the linear probe; stage 1 of
two-stage), every evaluation, and with ``--probe_views`` training too, runs the classifier alone on them.

The Trainer still drives: it gets datasets whose ``pixel_values`` are the backbone's pooled features (one vector
an image) and the same full model, whose timm module, inside ``head_only``, sends 2-D inputs to the classifier
and images through the whole network. Checkpoints, early stopping, logging, resuming and DDP are the Trainer's own,
and the saved model is the full model. Features are kept while the backbone's weights stay as they were when they
were computed, and computed again otherwise.

The features are those of the backbone in eval mode, as the linear-probe protocol takes them: dropout before the
classifier is applied to them in training as the model applies it, stochastic depth inside the backbone is not.
"""

from __future__ import annotations

import contextlib
import logging
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import Trainer
from transformers.trainer_utils import PredictionOutput

from flowers_hf.data.batch_color import BatchColorJitter
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import ModelInput, collate_fn
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.data_path import TrainingData
from flowers_hf.training.distill import Teacher

logger = logging.getLogger(__name__)

# How closely the classifier on the features must give the model's logits for the features path to be used.
_TOLERANCE = 1e-4


@dataclass
class FeatureSources:
    """The splits a frozen stage may need features of, each with its transform attached (uint8 or float tensors).

    Attributes:
        train: the training split with the training transform (``--probe_views`` 2 or more draws its views here).
        train_plain: the training split with the eval transform (``--probe_views 1``: no augmentation).
        splits: validation, test and any others by name, with the eval transform.
        batch_augment: the device's part of the training augmentation (``TrainingData.batch_augment``), applied
            to ``train``'s batches; ``None`` if the workers do all of it.
    """

    train: datasets.Dataset
    train_plain: datasets.Dataset
    splits: dict[str, datasets.Dataset]
    batch_augment: BatchColorJitter | None = None


class FeatureDataset(torch.utils.data.Dataset):
    """Precomputed features as the Trainer's examples: ``{"pixel_values": feature vector, "labels": label}``, and
    with a teacher, ``"teacher_logits"``: its logits for the same view of the image.

    With several views per image, each example draws one at random with torch's generator (restored from
    checkpoints on resume), so the epochs see the views in different mixes.
    """

    def __init__(self, views: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None) -> None:
        if views.dim() != 3 or views.shape[1] != len(labels):
            raise ValueError(f"views must be (views, images, features) for {len(labels)} labels, got {views.shape}")
        if teacher_logits is not None and teacher_logits.shape[:2] != views.shape[:2]:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} do not match views {tuple(views.shape)}")
        self.views = views
        self.labels = labels
        self.teacher_logits = teacher_logits

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        view = int(torch.randint(len(self.views), ())) if len(self.views) > 1 else 0
        example = {"pixel_values": self.views[view, index], "labels": self.labels[index]}
        if self.teacher_logits is not None:
            example["teacher_logits"] = self.teacher_logits[view, index]
        return example


def is_head_only(trainable_groups: int | None) -> bool:
    """Whether a stage training ``trainable_groups`` groups (``parameter_groups``) trains the classifier alone."""
    return trainable_groups == 1


@contextlib.contextmanager
def head_only(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model.timm_model`` takes feature vectors (2-D inputs) to its classifier; images still
    run through the whole network. Copies of the model made inside (the EMA's) keep the behaviour."""
    timm_model = model.timm_model
    timm_model.forward = types.MethodType(_features_or_images, timm_model)
    try:
        yield
    finally:
        del timm_model.forward


def _features_or_images(self: torch.nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    if x.dim() == 2:
        # timm's forward_head applies its dropout before the classifier, after pre_logits.
        x = F.dropout(x, p=float(getattr(self, "drop_rate", 0.0) or 0.0), training=self.training)
        return self.get_classifier()(x)
    return type(self).forward(self, x, **kwargs)


class FrozenFeatures:
    """Features of ``model``'s backbone for the splits of ``sources``, each computed once while the backbone is
    unchanged.

    Args:
        model: the ``TimmWrapperForImageClassification`` being trained (its backbone frozen when used).
        sources: the splits, with their transforms.
        args: the training arguments: device, precision, batch size, workers, seed, ``--probe_views``.
        prep: the model's mean and std, for uint8 batches.
        teacher: with ``--teacher``, the model whose logits the training views are stored with (computed once, on
            the very pixels each view's features come from).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        sources: FeatureSources,
        args: FlowersTrainingArguments,
        prep: Preprocessing,
        teacher: Teacher | None = None,
    ) -> None:
        self.model = model
        self.sources = sources
        self.args = args
        self.teacher = teacher
        self.model_input = ModelInput(prep, args.channels_last)
        self._cache: dict[str, FeatureDataset] = {}
        self._signature: torch.Tensor | None = None
        self._checked: bool | None = None

    def available(self) -> bool:
        """Whether the classifier on the features gives the model's logits (checked once, on a validation batch)."""
        if self._checked is None:
            self._checked = self._decomposes()
        return self._checked

    def split(self, name: str) -> FeatureDataset:
        """The features of split ``name`` (``sources.splits``), with the eval transform."""
        return self._get(name, lambda: self._compute(self.sources.splits[name], 1, f"features of {name}"))

    def training(self) -> FeatureDataset:
        """``--probe_views`` K views of every training image: K = 1 unaugmented, K > 1 augmented."""
        views = self.args.probe_views
        source = self.sources.train_plain if views == 1 else self.sources.train
        kind = "unaugmented" if views == 1 else "augmented"
        augment = self.sources.batch_augment if views > 1 else None
        description = f"features of train ({views} {kind} views{', with the teacher' if self.teacher else ''})"
        return self._get("train", lambda: self._compute(source, views, description, augment, self.teacher))

    def _get(self, key: str, compute: Callable[[], FeatureDataset]) -> FeatureDataset:
        signature = _backbone_signature(self.model)
        if self._signature is None or not torch.equal(signature, self._signature):
            self._cache.clear()  # the backbone changed since (stage 2 trained it): earlier features are stale
            self._signature = signature
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @torch.inference_mode()
    def _compute(
        self,
        dataset: datasets.Dataset,
        views: int,
        description: str,
        augment: BatchColorJitter | None = None,
        teacher: Teacher | None = None,
    ) -> FeatureDataset:
        start = time.perf_counter()
        model = self._ready()
        per_view, per_view_teacher, labels = [], [], None
        for view in range(views):
            loader = self._loader(dataset, seed=self.args.seed + view)
            progress = tqdm(
                loader, desc=description, leave=False, disable=self.args.disable_tqdm or not self.args.should_log
            )
            # The device's part of the augmentation draws from its own generator, seeded like the loader's.
            draws = torch.Generator().manual_seed(self.args.seed + view)
            batches = [self._batch(model, batch, augment, draws, teacher) for batch in progress]
            per_view.append(torch.cat([features for features, _, _ in batches]))
            if teacher is not None:
                per_view_teacher.append(torch.cat([logits for _, logits, _ in batches]))
            labels = torch.cat([label for _, _, label in batches])
        logger.info(
            "Computed the %s of %d images once in %.1f s", description, len(labels), time.perf_counter() - start
        )
        teacher_logits = torch.stack(per_view_teacher) if teacher is not None else None
        return FeatureDataset(torch.stack(per_view), labels, teacher_logits)

    def _batch(
        self,
        timm_model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        augment: BatchColorJitter | None,
        draws: torch.Generator,
        teacher: Teacher | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """A batch's features (after the device's part of the augmentation, if any), the teacher's logits for the
        same pixels (or ``None``) and its labels."""
        pixels = batch["pixel_values"]
        if augment is not None:
            pixels = augment(pixels.to(self.args.device, non_blocking=True), draws)
        pixels = self._input(pixels)
        with self._autocast():
            features = pre_logits(timm_model, pixels).float().cpu()
            logits = teacher.logits(pixels).float().cpu() if teacher is not None else None
        return features, logits, batch["labels"]

    def _ready(self) -> torch.nn.Module:
        model = self.model.to(self.args.device)
        model.eval()
        return model.timm_model

    def _loader(self, dataset: datasets.Dataset, seed: int) -> torch.utils.data.DataLoader:
        # Its own seeded generator: the workers' augmentation seeds, hence the views, are the same on every process
        # and in a resumed run.
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            collate_fn=collate_fn,
            generator=torch.Generator().manual_seed(seed),
        )

    def _input(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model_input(pixels.to(self.args.device, non_blocking=True))

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.args.device).type, dtype=dtype)

    @torch.inference_mode()
    def _decomposes(self) -> bool:
        timm_model = self._ready()
        name = next(iter(self.sources.splits))
        batch = next(iter(self._loader(self.sources.splits[name], seed=self.args.seed)))
        pixels = self._input(batch["pixel_values"][:8])
        features = pre_logits(timm_model, pixels)
        if features.dim() != 2:
            logger.warning("%s's pre-logits are not vectors: evaluating the whole model", type(timm_model).__name__)
            return False
        logits = type(timm_model).forward(timm_model, pixels)
        error = (timm_model.get_classifier()(features) - logits).abs().max().item()
        scale = logits.abs().max().item() or 1.0
        if error > _TOLERANCE * scale:
            logger.warning(
                "%s: its classifier on forward_head(pre_logits=True) differs from its logits by %.2g; evaluating the "
                "whole model every time",
                type(timm_model).__name__,
                error,
            )
            return False
        return True


def pre_logits(timm_model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The pooled features timm's classifier takes (``forward_head(..., pre_logits=True)``)."""
    return timm_model.forward_head(timm_model.forward_features(pixels), pre_logits=True)


def _backbone_signature(model: torch.nn.Module) -> torch.Tensor:
    """A checksum of every weight and buffer outside the classifier: equal while the backbone is unchanged."""
    head = {id(t) for t in model.timm_model.get_classifier().parameters()}
    tensors = [t for t in (*model.parameters(), *model.buffers()) if id(t) not in head and t.is_floating_point()]
    with torch.no_grad():
        return torch.stack([t.detach().double().sum() for t in tensors] + [torch.zeros((), dtype=torch.float64)]).cpu()


def frozen_features(
    model: torch.nn.Module,
    data: TrainingData,
    args: FlowersTrainingArguments,
    prep: Preprocessing,
    teacher: Teacher | None = None,
) -> FrozenFeatures | None:
    """With ``--freeze_backbone`` and ``--frozen_features``: the backbone's features, for the stages that train the
    classifier alone (evaluations, and with ``--probe_views`` training too); ``None`` otherwise.

    Args:
        model: the model being trained.
        data: the splits with their transforms.
        args: the training arguments.
        prep: the model's mean and std, for uint8 batches.
        teacher: with ``--teacher``, stored with the training views (``--probe_views``).
    """
    if not (args.freeze_backbone and args.frozen_features):
        return None
    others = {name: split for name, split in data.splits.items() if name != "train"}
    sources = FeatureSources(data.splits["train"], data.train_plain, others, data.batch_augment)
    return FrozenFeatures(model, sources, args, prep, teacher)


def predict_split(
    trainer: Trainer, data: datasets.DatasetDict, name: str, prefix: str, features: FrozenFeatures | None = None
) -> PredictionOutput:
    """``trainer.predict`` of split ``name``: on its features, the classifier alone, when ``features`` are given
    (the model's backbone is the frozen one they come from), else on its images.

    Args:
        trainer: a Trainer of the model.
        data: the splits, with their transforms attached.
        name: the split.
        prefix: the metrics' prefix (``eval``, ``test``).
        features: the frozen backbone's features, or ``None``.
    """
    if features is None:
        return trainer.predict(data[name], metric_key_prefix=prefix)
    with head_only(trainer.model):
        return trainer.predict(features.split(name), metric_key_prefix=prefix)
