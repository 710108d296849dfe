"""Training in stages (frozen backbone, then partly unfrozen), each with its own Trainer, resumable from disk."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from transformers import TimmWrapperForImageClassification, Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from flowers_hf.core.errors import MissingFileError
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.checkpoints import check_num_classes, last_complete_checkpoint
from flowers_hf.training.frozen_features import FrozenFeatures, head_only, is_head_only
from flowers_hf.training.interrupt import SaveOnInterrupt, TrainingInterrupted
from flowers_hf.training.layer_groups import describe_trainable, set_trainable

logger = logging.getLogger(__name__)

_OTHER_DATA = "Resume only on the data set it was trained on, or give another --output_dir."


@dataclass
class Stage:
    """One phase of training with its own optimizer, schedule and early stopping."""

    number: int
    description: str
    trainable_groups: int | None  # parameter groups that train, counted from the head; None: all
    epochs: float
    learning_rate: float


@dataclass
class StageResult:
    stage: Stage
    best_checkpoint: str | None
    best_metric: float | None
    epochs_run: float
    log_history: list[dict[str, Any]] = field(default_factory=list)


def plan_stages(args: FlowersTrainingArguments, num_groups: int) -> list[Stage]:
    """Stage 1 (head only with ``--freeze_backbone``, else everything) and the optional stage 2.

    Args:
        args: the training arguments.
        num_groups: the number of the model's parameter groups (the head included).
    """
    first = (1, "head only (frozen backbone)") if args.freeze_backbone else (None, "all layers")
    stages = [Stage(1, first[1], first[0], args.num_train_epochs, args.learning_rate)]
    if args.stage2_epochs > 0:
        if args.stage2_unfreeze == -1 or args.stage2_unfreeze + 1 >= num_groups:
            groups, description = None, "all layers"
        else:
            groups, description = args.stage2_unfreeze + 1, f"last {args.stage2_unfreeze} groups and the head"
        stages.append(Stage(2, description, groups, args.stage2_epochs, args.stage2_learning_rate))
    return stages


@dataclass
class TrainedStages:
    """The stages' results, the best of them (its weights in the model), and the frozen backbone's features when the
    best stage trained the classifier alone on them (``None`` otherwise)."""

    results: list[StageResult]
    best: StageResult
    features: FrozenFeatures | None


def train_stages(
    model: TimmWrapperForImageClassification,
    groups: list[list[str]],
    args: FlowersTrainingArguments,
    make_trainer: Callable[..., Trainer],
    features: FrozenFeatures | None = None,
) -> TrainedStages:
    """Train stage by stage (``plan_stages``); each stage ends on its best checkpoint, and the model goes back to the
    best stage's when an earlier stage scored best on validation.

    Args:
        model: the ``TimmWrapperForImageClassification`` (changed in place).
        groups: ``parameter_groups`` of ``model.timm_model``, taken before any freezing.
        args: the run's training arguments.
        make_trainer: builds the Trainer for a stage's arguments.
        features: the frozen backbone's features, or ``None``.
    """
    results = [
        run_stage(stage, model, groups, args, make_trainer, features) for stage in plan_stages(args, len(groups))
    ]
    best = best_stage(results, args.greater_is_better)
    if best is not results[-1]:
        logger.info("Stage %d scored best on validation; going back to its best checkpoint", best.stage.number)
        set_trainable(model.timm_model, groups, best.stage.trainable_groups)
        load_checkpoint_weights(model, best.best_checkpoint)
    if not (features is not None and is_head_only(best.stage.trainable_groups) and features.available()):
        features = None
    return TrainedStages(results, best, features)


def run_stage(
    stage: Stage,
    model: TimmWrapperForImageClassification,
    groups: list[list[str]],
    args: FlowersTrainingArguments,
    make_trainer: Callable[..., Trainer],
    features: FrozenFeatures | None = None,
) -> StageResult:
    """Train one stage in ``output_dir/stage<N>``; a finished stage is not trained again, an interrupted one
    resumes from its last complete checkpoint. Ctrl-C saves a checkpoint and raises ``TrainingInterrupted``.

    Args:
        stage: what trains, how long, how fast.
        model: the ``TimmWrapperForImageClassification`` (changed in place).
        groups: ``parameter_groups`` of ``model.timm_model``.
        args: the run's training arguments; the stage's copy gets its own folder, epochs and learning rate.
        make_trainer: builds the Trainer for the stage's arguments (``train_dataset``/``eval_dataset`` override
            its splits).
        features: the frozen backbone's features (``flowers_hf.training.frozen_features``), used by a stage that
            trains the classifier alone; ``None``: every stage runs the whole model.
    """
    stage_dir = Path(args.output_dir) / f"stage{stage.number}"
    set_trainable(model.timm_model, groups, stage.trainable_groups)
    logger.info("Stage %d: %s; %s", stage.number, stage.description, describe_trainable(model))
    state = _finished_state(stage_dir)
    if state is not None:
        # The stage ended on its best checkpoint, or on its last one without --load_best_model_at_end.
        best = args.load_best_model_at_end and state.best_model_checkpoint
        checkpoint = best or last_complete_checkpoint(stage_dir)
        if checkpoint is not None:
            check_num_classes(checkpoint, model.config.num_labels, f"Stage {stage.number}'s checkpoint", _OTHER_DATA)
        logger.info("Stage %d finished earlier; loading its checkpoint %s", stage.number, checkpoint)
        load_checkpoint_weights(model, checkpoint)
        return _result(stage, state)
    if not (features is not None and is_head_only(stage.trainable_groups) and features.available()):
        features = None
    return _result(stage, _train(stage, stage_dir, model, args, make_trainer, features))


def _train(
    stage: Stage,
    stage_dir: Path,
    model: TimmWrapperForImageClassification,
    args: FlowersTrainingArguments,
    make_trainer: Callable[..., Trainer],
    features: FrozenFeatures | None,
) -> TrainerState:
    last = last_complete_checkpoint(stage_dir)
    if last is not None:
        check_num_classes(last, model.config.num_labels, "Checkpoint", _OTHER_DATA)
        logger.info("Resuming stage %d from checkpoint %s", stage.number, last)
        _warn_if_inexact(args, features)
    # No Hub token here either: train.py took it out of the arguments (FlowersTrainingArguments.take_hub_token).
    stage_args = dataclasses.replace(
        args, output_dir=str(stage_dir), num_train_epochs=stage.epochs, learning_rate=stage.learning_rate
    )
    splits = {}
    if features is not None:
        splits["eval_dataset"] = features.split("validation")
        if args.probe_views:
            splits["train_dataset"] = features.training()
            # Rows of a tensor: no decoding left for workers to do.
            stage_args = dataclasses.replace(stage_args, dataloader_num_workers=0)
    trainer = make_trainer(stage_args, **splits)
    interrupt = SaveOnInterrupt()
    trainer.add_callback(interrupt)
    try:
        with head_only(model) if features is not None else contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=last)
    finally:
        interrupt.restore()
    if interrupt.interrupted:
        step = trainer.state.global_step
        message = f"stage {stage.number} stopped by Ctrl-C at step {step}, after saving {stage_dir}/checkpoint-{step}"
        if trainer.is_world_process_zero():
            logger.warning("%s; run the same command again to resume from it", message)
        raise TrainingInterrupted(message)
    trainer.save_state()
    return trainer.state


def _warn_if_inexact(args: FlowersTrainingArguments, features: FrozenFeatures | None) -> None:
    # Fresh DataLoader workers reseed the augmentation from torch's RNG, which the checkpoint restores; persistent
    # workers carry their stream over from epoch 1, and without workers Albumentations keeps its own random
    # state: neither is in a checkpoint. Precomputed views are drawn with torch's RNG, in the main process.
    if features is not None and args.probe_views:
        return
    if args.dataloader_num_workers == 0 or args.dataloader_persistent_workers:
        logger.warning(
            "The epochs after the resume see other random augmentations than an uninterrupted run would (close "
            "results, not identical ones); --dataloader_num_workers 1 or more with --dataloader_persistent_workers "
            "false resumes exactly"
        )


def _finished_state(stage_dir: Path) -> TrainerState | None:
    """The state a finished stage wrote, or ``None``; a file cut short by a kill means the stage did not finish."""
    path = stage_dir / TRAINER_STATE_NAME  # Trainer.save_state writes it when a stage has finished
    if not path.is_file():
        return None
    try:
        return TrainerState.load_from_json(str(path))
    except (OSError, ValueError, TypeError) as error:
        logger.warning("%s is not readable (%s): the stage was stopped while finishing; resuming it", path, error)
        return None


def _result(stage: Stage, state: TrainerState) -> StageResult:
    return StageResult(stage, state.best_model_checkpoint, state.best_metric, state.epoch or 0.0, state.log_history)


def load_checkpoint_weights(model: TimmWrapperForImageClassification, checkpoint: str | None) -> None:
    """Load a Trainer checkpoint's weights into ``model``, whose frozen layers must be as they were when saved."""
    path = Path(checkpoint or "") / "model.safetensors"
    if checkpoint is None or not path.is_file():
        raise MissingFileError(
            f"the best checkpoint of a finished stage is missing ({path}); delete that stage's folder to train it again"
        )
    model.load_state_dict(load_file(str(path)))


def best_stage(results: list[StageResult], greater_is_better: bool) -> StageResult:
    """The stage whose best checkpoint scored best on validation (the last one on a tie or without scores)."""
    scored = [r for r in results if r.best_metric is not None]
    if not scored:
        return results[-1]
    sign = 1.0 if greater_is_better else -1.0
    return max(reversed(scored), key=lambda r: sign * r.best_metric)


def merged_history(results: list[StageResult]) -> list[dict[str, Any]]:
    """The log histories of all stages on one epoch axis, each record tagged with its ``stage``."""
    history, offset = [], 0.0
    for result in results:
        for record in result.log_history:
            if "epoch" in record:
                history.append({**record, "epoch": offset + record["epoch"], "stage": result.stage.number})
        offset += result.epochs_run
    return history
