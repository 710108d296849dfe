"""Trainer callbacks: an exponential moving average (EMA) of the weights, with timm's ``ModelEmaV3``.

How ``EmaCallback`` fits the Trainer:

- **Update.** After every optimizer step (``on_step_end``) the EMA moves towards the weights:
  ``ema = d·ema + (1 − d)·weights``, parameters and BatchNorm statistics alike. timm's rule for ``d`` at global
  step n: 0 at n = 1 (the EMA starts as the weights after the first step), then ``decay``, or with ``warmup``
  ``min(decay, 1 − n^(−2/3))``, so that a short run averages over a horizon that grows with it.
- **The EMA is what is evaluated and saved.** The Trainer evaluates and saves right after ``on_step_end`` or
  ``on_epoch_end``, where ``DefaultFlowCallback`` (always the first callback) has already set
  ``control.should_evaluate``/``should_save``. When one of them is set, the callback swaps the EMA's tensors into
  the model in place, and the live weights wait in the EMA's module until the next ``on_step_begin`` swaps them
  back, before the next forward pass. So validation metrics, the choice of the best checkpoint, every checkpoint's
  ``model.safetensors`` and ``load_best_model_at_end`` all see the EMA; swapping values rather than modules keeps
  the optimizer's and DDP's references to the parameters valid.
- **Resuming.** A checkpoint also holds the live weights the optimizer was training, in
  ``training_weights.safetensors``. On resuming, the Trainer loads ``model.safetensors`` (the EMA) into the model;
  ``on_train_begin`` takes that as the EMA and loads the live weights back into the model, so an interrupted run
  goes on as if it had not stopped. The file is looked for in ``output_dir/checkpoint-<global step>``, where the
  Trainer's ``resume_from_checkpoint=True`` and ``flowers_hf.training.stages.run_stage`` resume from.
- **The end.** The trained model holds EMA weights: the best checkpoint's with ``load_best_model_at_end``, the
  last EMA otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from timm.utils import ModelEmaV3
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

TRAINING_WEIGHTS = "training_weights.safetensors"


class EmaCallback(TrainerCallback):
    """Keep an EMA of the model's weights; evaluate, checkpoint and finish with it (see the module docstring).

    Args:
        decay: the EMA decay (with ``warmup``, its ceiling), in (0, 1).
        warmup: ramp the decay up with the step as timm's ``ModelEmaV3(use_warmup=True)`` does.
    """

    def __init__(self, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.ema: ModelEmaV3 | None = None
        self._swapped = False  # the model holds the EMA and self.ema.module the live weights

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        self.ema = ModelEmaV3(model, decay=self.decay, use_warmup=self.warmup)
        self._swapped = False
        if state.global_step > 0:  # resumed: the model holds the checkpoint's EMA, now copied into self.ema
            self._load_training_weights(model, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        if self._swapped:
            self._swap(model)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        self.ema.update(model, step=state.global_step)
        self._swap_in_before_evaluate_or_save(control, model)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        self._swap_in_before_evaluate_or_save(control, model)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        if args.should_save:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_model(self.ema.module if self._swapped else model, str(checkpoint / TRAINING_WEIGHTS))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        loaded_best = args.load_best_model_at_end and state.best_model_checkpoint is not None
        if not loaded_best and not self._swapped:
            _copy(self.ema.module, model)
        self._swapped = False  # the best checkpoint (an EMA) or the last EMA stays in the model

    def _swap_in_before_evaluate_or_save(self, control: TrainerControl, model: torch.nn.Module) -> None:
        if (control.should_evaluate or control.should_save) and not self._swapped:
            self._swap(model)

    def _swap(self, model: torch.nn.Module) -> None:
        _swap_values(model, self.ema.module)
        self._swapped = not self._swapped

    def _load_training_weights(self, model: torch.nn.Module, checkpoint: Path) -> None:
        path = checkpoint / TRAINING_WEIGHTS
        if not path.is_file():
            logger.warning("Resuming without %s: the EMA starts again from the checkpoint's weights", path)
            return
        load_model(model, str(path))
        logger.info("Resumed the EMA from %s and the training weights from %s", checkpoint, path.name)


@torch.no_grad()
def _swap_values(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Exchange the values of two modules of the same layout in place (parameters and buffers)."""
    seen = set()
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        if x.data_ptr() in seen:  # a tied tensor: swapping it twice would undo the swap
            continue
        seen.add(x.data_ptr())
        keep = x.clone()
        x.copy_(y)
        y.copy_(keep)


@torch.no_grad()
def _copy(source: torch.nn.Module, target: torch.nn.Module) -> None:
    for x, y in zip(target.state_dict().values(), source.state_dict().values(), strict=True):
        x.copy_(y)
