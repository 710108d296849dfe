"""The Trainer of a stage: the class-weighted loss (``flowers_hf.training.loss``) with the step's total weight,
training accuracy, a lower backbone learning rate, mixup/CutMix for training batches only, a teacher to distil from,
early stopping and EMA."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_NAME

from flowers_hf.core.disk import disk_full_guard
from flowers_hf.data.mixup import build_mixer
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import ModelInput, collate_fn
from flowers_hf.evaluation.metrics import build_compute_metrics
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.distill import Teacher
from flowers_hf.training.ema import EmaCallback
from flowers_hf.training.loss import DistillationLoss, TeacherTargets, WeightedCrossEntropy

logger = logging.getLogger(__name__)


class ClassWeightedTrainer(Trainer):
    """``Trainer`` whose loss is ``WeightedCrossEntropy`` and whose training logs include ``train_accuracy``.

    ``train_accuracy`` is measured on the augmented training batches since the previous log; against soft targets
    (mixup, CutMix), against their largest class. ``batch_augment``, if given, augments each uint8 training batch
    on the device (``--color_jitter_on_device``), before ``mixer``, if given, mixes it once it is the model's float
    input, before the step's total weight is counted. ``teacher``, if given, adds the distillation term of
    ``DistillationLoss`` to every training batch: its logits for the batch's model input (the augmented and mixed
    one), or the ``teacher_logits`` a batch brings along (a frozen backbone's stored views).

    The overrides below are written against transformers 5.23 and checked against 5.17's source, the oldest version
    supported (``flowers_hf.core.versions``); each comment names where the two differ.
    """

    # The loss is already divided by the optimizer step's total weight (get_batch_samples), so the Trainer must not
    # divide it by the accumulation steps again: 5.23 reads this attribute; 5.17 has none and decides the same from
    # compute_loss_func being set.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        loss: WeightedCrossEntropy,
        backbone_learning_rate_scale: float = 1.0,
        mixer: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        prep: Preprocessing | None = None,
        channels_last: bool = False,
        batch_augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        teacher: Teacher | None = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 4.0,
        **kwargs,
    ):
        loss_func = loss if teacher is None else DistillationLoss(loss, distill_alpha, distill_temperature)
        super().__init__(*args, compute_loss_func=loss_func, **kwargs)
        self.loss = loss
        self.teacher = teacher
        self.backbone_learning_rate_scale = backbone_learning_rate_scale
        self.mixer = mixer
        self.batch_augment = batch_augment
        self.model_input = ModelInput(prep, channels_last)
        self._train_counts: torch.Tensor | None = None  # [correct, seen] since the last log

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # transformers 5.17 and 5.23 send every training and prediction batch through here on the device: uint8
        # pixels (the default data path) become the model's float input here rather than in the DataLoader
        # workers, which then do less and send a quarter of the bytes.
        inputs = super()._prepare_inputs(inputs)
        if inputs.get("pixel_values") is not None:
            inputs["pixel_values"] = self.model_input(inputs["pixel_values"])
        return inputs

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        # transformers 5.17 and 5.23 write each checkpoint with this method. On a full disk: one line with the path
        # and the space, the checkpoint cut short removed, the earlier ones (rotated out only after a save) kept.
        folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        then = "the same command resumes from the last complete checkpoint"
        with disk_full_guard(folder, _checkpoint_bytes(self.model), then=then, remove=folder):
            super()._save_checkpoint(model, trial)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        # transformers 5.17's and 5.23's save_pretrained write the weights on global rank 0 alone
        # (should_save_on_this_rank), whatever is_main_process says: with --save_on_each_node the checkpoints of the
        # other machines had none, and those machines started again from step 0 while machine 0 resumed (a
        # collective mismatch). 5.23 calls _save on every process (it returns at once where not should_save); 5.17
        # only where should_save: the condition below holds for both.
        if self.args.should_save and not self.is_world_process_zero():
            folder = Path(output_dir or self.args.output_dir)
            model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
            model.config.save_pretrained(folder)
            safetensors.torch.save_model(model, str(folder / SAFE_WEIGHTS_NAME), metadata={"format": "pt"})

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        # transformers 5.17 and 5.23: get_batch_samples returns the optimizer step's micro-batches and their label
        # count, which the Trainer passes to the loss as num_items_in_batch (the same on every process when
        # average_tokens_across_devices; under tensor or context parallelism 5.17 and 5.23 divide it differently,
        # which this project does not use). A weighted mean divides by their total weight instead.
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.batch_augment is not None:  # training batches only: evaluation and prediction do not come here
            batches = [self._augmented(batch) for batch in batches]
        if self.mixer is not None:
            batches = [self._mixed(batch) for batch in batches]
        if num_items is None or not batches:
            return batches, num_items
        total = sum(self.loss.total_weight(batch["labels"]) for batch in batches).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        return batches, total

    def _augmented(self, batch: dict[str, Any]) -> dict[str, Any]:
        pixels = batch["pixel_values"]
        if pixels.dtype != torch.uint8 or pixels.dim() != 4:  # a frozen backbone's features: augmented before
            return batch
        return {**batch, "pixel_values": self.batch_augment(pixels)}

    def _mixed(self, batch: dict[str, Any]) -> dict[str, Any]:
        # Mixed on the device, from the model's input: the loss's total weight then counts the soft targets.
        # (--probe_views, the one training path on features, refuses mixup.)
        pixels, labels = self.mixer(self.model_input(batch["pixel_values"]), batch["labels"])
        return {**batch, "pixel_values": pixels, "labels": labels}

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ):
        labels = inputs.get("labels")
        teacher_logits = inputs.pop("teacher_logits", None)
        if self.teacher is not None and model.training and labels is not None:
            # The labels and the teacher's logits travel together as the targets: compute_loss (5.17 and 5.23 alike)
            # hands them, untouched, to DistillationLoss, and the model never sees them.
            inputs = {**inputs, "labels": TeacherTargets(labels, self._teacher_logits(inputs, teacher_logits))}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and labels is not None:
            hard = labels.argmax(-1) if labels.dim() == 2 else labels
            correct = (outputs["logits"].argmax(-1) == hard).sum()
            counts = torch.stack([correct, torch.tensor(hard.numel(), device=labels.device)])
            self._train_counts = counts if self._train_counts is None else self._train_counts + counts
        return (loss, outputs) if return_outputs else loss

    def _teacher_logits(self, inputs: dict[str, Any], stored: torch.Tensor | None) -> torch.Tensor:
        if stored is not None:
            return stored
        pixels = inputs["pixel_values"]
        if pixels.dim() != 4:
            raise ValueError("a batch of features without the teacher's logits: the views were stored without them")
        with self.accelerator.autocast():  # the student's precision; the teacher is not wrapped by accelerate
            return self.teacher.logits(pixels)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._train_counts is not None:
            # Every process logs the training loss together, so the counts can be summed across them here.
            correct, seen = self.accelerator.reduce(self._train_counts, reduction="sum").tolist()
            logs["train_accuracy"] = round(correct / max(seen, 1), 4)
            self._train_counts = None
        super().log(logs, start_time)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if self.backbone_learning_rate_scale == 1.0:
            return optimizer
        # Split the Trainer's (decay, no decay) groups into head and backbone, the backbone at a lower rate.
        timm_model = (model or self.model).timm_model
        head = {id(p) for p in timm_model.get_classifier().parameters()}
        groups = []
        for group in optimizer.param_groups:
            for is_head in (True, False):
                params = [p for p in group["params"] if (id(p) in head) == is_head]
                scale = 1.0 if is_head else self.backbone_learning_rate_scale
                if params:
                    groups.append({**group, "params": params, "lr": group["lr"] * scale})
        optimizer.param_groups.clear()  # the optimizer has no state yet: regrouping is safe
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer


def _checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what a checkpoint takes: the weights, and AdamW's two moments of the trainable ones."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return weights + 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def build_trainer(
    args: FlowersTrainingArguments,
    model: torch.nn.Module,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    class_weights: torch.Tensor | None,
    prep: Preprocessing | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    batch_augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    teacher: Teacher | None = None,
) -> ClassWeightedTrainer:
    """The Trainer of one stage: weighted loss, offline metrics, early stopping on the validation metric; with
    ``FlowersTrainingArguments``' options, mixup/CutMix of the training batches and an EMA of the weights.

    Args:
        args: the stage's training arguments.
        model: the classifier.
        train_dataset: the training split with the training transform attached.
        eval_dataset: the validation split with the eval transform attached.
        class_weights: per-class loss weights, or ``None``.
        prep: the model's input contract, whose mean and std turn uint8 batches into its input on the device.
        callbacks: more Trainer callbacks (a search's pruning callback).
        batch_augment: what augments each uint8 training batch on the device (``TrainingData.batch_augment``:
            the colour jitter with ``--color_jitter_on_device``), or ``None``.
        teacher: the model to distil from (``--teacher``), or ``None``.
    """
    if args.push_to_hub:
        # The Trainer would push every stage's checkpoints as it saves them; train.py publishes the finished
        # model folder once instead (flowers_hf.reporting.publish.push_model).
        args = dataclasses.replace(args, push_to_hub=False)
    callbacks = list(callbacks)
    if args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    if args.ema_decay > 0:
        callbacks.append(EmaCallback(args.ema_decay, warmup=args.ema_warmup))
    mixer = None
    if args.mixup_alpha > 0 or args.cutmix_alpha > 0:
        # The mixed targets carry the label smoothing; the loss smooths only the hard labels of evaluation.
        mixer = build_mixer(
            model.config.num_labels,
            args.mixup_alpha,
            args.cutmix_alpha,
            prob=args.mixup_prob,
            switch_prob=args.mixup_switch_prob,
            label_smoothing=args.label_smoothing_factor,
        )
    return ClassWeightedTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_fn,
        mixer=mixer,
        compute_metrics=build_compute_metrics(),
        callbacks=callbacks,
        loss=WeightedCrossEntropy(class_weights, label_smoothing=args.label_smoothing_factor),
        backbone_learning_rate_scale=args.backbone_learning_rate_scale,
        prep=prep,
        channels_last=args.channels_last,
        batch_augment=batch_augment,
        teacher=teacher,
        distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature,
    )
