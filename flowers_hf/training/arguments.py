"""``TrainingArguments`` with this project's defaults and its own options: schedule of stages, precision, loss."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments
from transformers.utils import is_torch_tf32_available

from flowers_hf.core.errors import ArgumentError
from flowers_hf.core.hub import is_hub_id

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_MACHINE_DEPENDENT = ("use_cpu", "fp16", "bf16", "tf32", "accelerator_config", "dataloader_persistent_workers")
MAX_WORKERS = 12  # a 224-px worker prepares ~700 images/s (BENCHMARKS.md): 12 feed ~8,000/s, more than one GPU takes


def default_workers() -> int:
    """DataLoader workers per training process: the cores this process may use, shared among the processes that
    ``torchrun``/``accelerate launch`` start on this machine (``LOCAL_WORLD_SIZE``), at most ``MAX_WORKERS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(MAX_WORKERS, cores // max(1, local_processes)))


CLASS_WEIGHTS = ("balanced", "none")


@dataclass(repr=False)  # keep TrainingArguments' repr, which hides the Hub token
class FlowersTrainingArguments(TrainingArguments):
    """Every ``TrainingArguments`` flag, with defaults for image classification, plus fine-tuning options.

    Stage 1 trains for ``num_train_epochs`` at ``learning_rate``: the head alone with ``--freeze_backbone``
    (a linear probe), otherwise everything. With ``--stage2_epochs`` > 0, stage 2 then unfreezes the last
    ``--stage2_unfreeze`` groups before the head and trains at ``--stage2_learning_rate``, with a fresh
    optimizer, scheduler and early stopping.

    Against distribution shift: ``--mixup_alpha``/``--cutmix_alpha`` mix the training batches (soft targets, which
    carry ``--label_smoothing_factor``), and ``--ema_decay`` keeps an EMA of the weights that is evaluated, saved
    and kept at the end in their place (``flowers_hf.training.ema``).

    Small from big: ``--teacher`` distils a finished model into this one (``flowers_hf.training.distill``), weighted
    by ``--distill_alpha`` and softened by ``--distill_temperature``.

    NOTE: these defaults differ from ``TrainingArguments`` (transformers 5.23), each for a reason:

    - ``output_dir="runs/flowers"`` (None): a run folder is the product, so every run has one.
    - ``learning_rate=1e-3`` (5e-5), ``weight_decay=0.01`` (0.0), ``num_train_epochs=20`` (3),
      ``per_device_train_batch_size=32`` (8): the ResNet18 linear-probe reference recipe (AdamW on a new head); the
      presets in ``configs/`` set their own.
    - ``per_device_eval_batch_size=64`` (8): evaluation keeps no activations for backward, so it takes larger batches.
    - ``eval_strategy``, ``save_strategy``, ``logging_strategy="epoch"`` (no / steps / steps): Flowers-102 has
      1,020 training images, a few dozen steps an epoch; the epoch is the unit of the recipes, the curves and early
      stopping.
    - ``save_total_limit=2`` (None): the best and the last checkpoint are all that stages and resuming need.
    - ``load_best_model_at_end=True`` (False), ``metric_for_best_model="accuracy"`` (None: the loss),
      ``greater_is_better=True`` (None): each stage ends on its best validation accuracy, which early stopping and
      the choice between stages use too.
    - ``restore_callback_states_from_checkpoint=True`` (False): a resumed run keeps early stopping's patience count,
      so it stops where an uninterrupted one would.
    - ``remove_unused_columns=False`` (True): the on-the-fly transform reads the ``image`` column, which the
      Trainer would otherwise drop as unknown to the model's ``forward``.
    - ``dataloader_num_workers=default_workers()`` (0): this machine's cores shared among its training processes, at
      most 12: augmentation runs in worker processes, beside the training step rather than on its critical path.
    - ``dataloader_pin_memory`` only where CUDA is (always on): pinned memory speeds up host-to-GPU copies and only
      costs memory on a CPU. With it, ``accelerator_config.non_blocking`` (False): batches are copied to the GPU
      asynchronously, overlapping the previous step.
    - ``tf32=True`` on GPUs that have it (Ampere and later; None): float32 matrix products and convolutions in
      TF32, several times faster, with bf16/fp16 autocast covering the rest.
    """

    output_dir: str | None = field(default="runs/flowers", metadata={"help": "Where checkpoints and results go."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of stage 1."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Epochs of stage 1."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on validation."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log training loss and accuracy."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept, the best one always among them (2: the best and the last)."}
    )
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End each stage with its best checkpoint."})
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "On resume, restore early stopping's patience count from the checkpoint."}
    )
    metric_for_best_model: str | None = field(default="accuracy", metadata={"help": "Validation metric to select on."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether a higher metric is better."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay false: the transform reads the image column."}
    )
    dataloader_num_workers: int = field(
        default_factory=default_workers,
        metadata={"help": "DataLoader worker processes (augmentation); default: the cores per process, at most 12."},
    )
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "Pinned host memory for batches (on CUDA machines)."}
    )
    dataloader_persistent_workers: bool = field(
        default=False,
        metadata={
            "help": "Keep DataLoader workers between epochs. Off by default: fresh workers reseed the augmentation "
            "from torch's RNG each epoch, which checkpoints restore, so a resumed run repeats an uninterrupted one "
            "exactly; on a GPU with short epochs, true saves the workers' start-up each epoch."
        },
    )

    channels_last: bool = field(
        default=False,
        metadata={"help": "Batches in channels-last memory layout (faster convolutions on GPUs with tensor cores)."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU), fp32, fp16 or bf16."},
    )
    class_weights: str = field(
        default="balanced",
        metadata={"help": "balanced: weight class c by n_samples / (n_classes × count_c) of the training split; none."},
    )
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Stop a stage after this many evaluations without improvement (0: never)."}
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "Stage 1 trains the classifier only."})
    frozen_features: bool = field(
        default=True,
        metadata={
            "help": "While only the classifier trains, compute the backbone's validation and test features once and "
            "evaluate the classifier alone on them (same scores, a fraction of the time); false: the whole model "
            "every evaluation."
        },
    )
    probe_views: int = field(
        default=0,
        metadata={
            "help": "With --freeze_backbone: precompute this many views of every training image and train the "
            "classifier on their features, one view drawn per image and epoch. 1: no augmentation (the linear-probe "
            "protocol); K > 1: K augmented views; 0: augment and run the backbone at every step. Memory: views x "
            "images x feature size floats (4 x 1,020 x 512 x 4 bytes = 8 MB for ResNet18 on Flowers-102)."
        },
    )
    backbone_learning_rate_scale: float = field(
        default=1.0, metadata={"help": "Learning rate of trainable backbone parameters relative to the head's."}
    )
    stage2_epochs: float = field(default=0.0, metadata={"help": "Epochs of stage 2 (0: no stage 2)."})
    stage2_unfreeze: int = field(
        default=2, metadata={"help": "Stage 2 trains this many of timm's parameter groups before the head (-1: all)."}
    )
    stage2_learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of stage 2."})
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "Mixup of training batches (timm's Mixup): Beta(α, α) mixing weight; 0: off."}
    )
    cutmix_alpha: float = field(
        default=0.0, metadata={"help": "CutMix of training batches (timm's Mixup): Beta(α, α) pasted area; 0: off."}
    )
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability that a training batch is mixed."})
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With mixup and CutMix both on: probability of CutMix for a batch."}
    )
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "Decay of an EMA of the weights (timm's ModelEmaV3), evaluated and saved; 0: off."},
    )
    ema_warmup: bool = field(
        default=True,
        metadata={"help": "Ramp the EMA decay up with the step n as min(ema_decay, 1 - n^(-2/3)) (timm's warmup)."},
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Knowledge distillation: a finished run folder or a Hub model of this project with the same "
            "classes, whose softened outputs on the same augmented view the student learns from as well (the loss "
            "alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T)); none: plain training."
        },
    )
    distill_alpha: float = field(
        default=0.5, metadata={"help": "With --teacher: the weight of the labels' cross-entropy (1: plain training)."}
    )
    distill_temperature: float = field(
        default=4.0,
        metadata={"help": "With --teacher: the temperature T that softens the teacher's and the student's outputs."},
    )

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ArgumentError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ArgumentError(f"--class_weights must be one of {CLASS_WEIGHTS}, got {self.class_weights!r}")
        if self.early_stopping_patience > 0 and not (self.load_best_model_at_end and self.eval_strategy != "no"):
            raise ArgumentError(
                "--early_stopping_patience needs --load_best_model_at_end true and an --eval_strategy; "
                "set --early_stopping_patience 0 to train without early stopping"
            )
        if self.early_stopping_patience < 0:
            raise ArgumentError(f"--early_stopping_patience must not be negative, got {self.early_stopping_patience}")
        if self.stage2_epochs < 0 or (self.stage2_unfreeze < 1 and self.stage2_unfreeze != -1):
            raise ArgumentError("--stage2_epochs must not be negative and --stage2_unfreeze must be -1 or at least 1")
        if self.backbone_learning_rate_scale <= 0:
            raise ArgumentError(
                f"--backbone_learning_rate_scale must be positive, not {self.backbone_learning_rate_scale}"
            )
        _check_robust_options(self)
        _check_probe_options(self)
        _check_distillation_options(self)
        if self.push_to_hub and not is_hub_id(self.hub_model_id):
            raise ArgumentError(
                f"--push_to_hub needs --hub_model_id OWNER/NAME (the model repository to create or update), "
                f"got {self.hub_model_id!r}"
            )
        if self.remove_unused_columns:
            raise ArgumentError("--remove_unused_columns must stay false: the image transform reads the image column")
        # As given, before this machine decides: what a saved configuration records for another machine.
        self.as_given = {key: getattr(self, key) for key in _MACHINE_DEPENDENT}
        if self.dataloader_num_workers == 0:
            self.dataloader_persistent_workers = False  # nothing to keep; the DataLoader refuses the pair
        if not torch.accelerator.is_available():
            # Without it the Trainer neither takes its CPU autocast path (bf16) nor sets up DDP over gloo
            # when started by `accelerate launch --multi_gpu` or torchrun on a machine without GPUs.
            self.use_cpu = True
        self.fp16, self.bf16 = _mixed_precision(self.precision, self.fp16, self.bf16, self.use_cpu)
        if torch.cuda.is_available() and not self.use_cpu:
            self.tf32, self.accelerator_config = gpu_defaults(
                self.tf32, self.accelerator_config, self.dataloader_pin_memory, is_torch_tf32_available()
            )
        super().__post_init__()

    def take_hub_token(self) -> str | None:
        """The ``--hub_token`` given, now removed from the arguments: it is for the push alone. Every Trainer pickles
        its arguments into each checkpoint (``training_args.bin``), and the arguments go into logs, TensorBoard and
        the run's configuration; without the token there, no file the run writes can hold it."""
        token, self.hub_token = self.hub_token, None
        return token

    def to_preset(self) -> dict:
        """The arguments as a ``--config`` preset: machine-dependent flags as given, no tokens."""
        values = {**self.to_dict(), **self.as_given}
        return {key: value for key, value in values.items() if not key.endswith("_token")}


def _check_robust_options(args: FlowersTrainingArguments) -> None:
    """Refuse impossible mixup, CutMix and EMA settings."""
    if args.mixup_alpha < 0 or args.cutmix_alpha < 0:
        raise ArgumentError("--mixup_alpha and --cutmix_alpha must not be negative (0 turns them off)")
    for name in ("mixup_prob", "mixup_switch_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ArgumentError(f"--{name} must lie in [0, 1], got {getattr(args, name)}")
    if (args.mixup_alpha > 0 or args.cutmix_alpha > 0) and args.per_device_train_batch_size % 2:
        raise ArgumentError("mixup and CutMix pair the images of a batch: --per_device_train_batch_size must be even")
    if not 0.0 <= args.ema_decay < 1.0:
        raise ArgumentError(f"--ema_decay must lie in [0, 1) (0 turns the EMA off), got {args.ema_decay}")


def _check_distillation_options(args: FlowersTrainingArguments) -> None:
    """Refuse impossible distillation settings."""
    if not 0.0 <= args.distill_alpha <= 1.0:
        raise ArgumentError(f"--distill_alpha must lie in [0, 1] (1: the labels alone), got {args.distill_alpha}")
    if args.distill_temperature <= 0:
        raise ArgumentError(f"--distill_temperature must be positive, got {args.distill_temperature}")
    if args.teacher is not None and not args.teacher.strip():
        raise ArgumentError("--teacher is empty: give a run folder or a Hub model id, or leave the flag out")


def gpu_defaults(
    tf32: bool | None, accelerator_config: Any, pin_memory: bool, tf32_available: bool
) -> tuple[bool | None, Any]:
    """``(tf32, accelerator_config)`` on a CUDA machine: TF32 where the GPU has it (Ampere and later) unless asked
    otherwise, and non-blocking host-to-GPU copies of pinned batches unless an accelerator config is given."""
    if tf32 is None and tf32_available:
        tf32 = True
    if pin_memory and accelerator_config is None:
        accelerator_config = {"non_blocking": True}  # the next batch is copied while the GPU computes
    return tf32, accelerator_config


def _check_probe_options(args: FlowersTrainingArguments) -> None:
    """Refuse ``--probe_views`` where no features can stand for the images."""
    if args.probe_views < 0:
        raise ArgumentError(f"--probe_views must not be negative (0 turns it off), got {args.probe_views}")
    if args.probe_views == 0:
        return
    if not (args.freeze_backbone and args.frozen_features):
        raise ArgumentError(
            "--probe_views trains on a frozen backbone's features: it needs --freeze_backbone true and "
            "--frozen_features true (or --probe_views 0)"
        )
    if args.mixup_alpha > 0 or args.cutmix_alpha > 0:
        raise ArgumentError(
            "--probe_views trains on features, which mixup and CutMix cannot mix as they mix images: set "
            "--probe_views 0 to augment the images at every step, or turn mixup and CutMix off"
        )


def _mixed_precision(precision: str, fp16: bool, bf16: bool, use_cpu: bool) -> tuple[bool, bool]:
    """(fp16, bf16) for the ``--precision`` choice on this machine."""
    cuda = torch.cuda.is_available() and not use_cpu
    if precision == "auto":
        if fp16 or bf16:
            return fp16, bf16  # explicit --fp16/--bf16 flags win over auto
        if not cuda:
            return False, False
        return (False, True) if torch.cuda.is_bf16_supported() else (True, False)
    if precision == "fp16" and not cuda:
        logger.warning("--precision fp16 needs a CUDA GPU; training in fp32 on this CPU instead")
        return False, False
    return precision == "fp16", precision == "bf16"
