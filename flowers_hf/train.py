"""``train.py``'s work: load the data, build the model, train it stage by stage, score it, write the run folder.

``train`` is the part up to the trained model, which ``python -m flowers_hf.tune`` runs for every trial of a search
(its own Trainer callbacks added, the test split left out); ``main`` adds the final pass, the run folder and the push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from datasets import DatasetDict
from transformers import TimmWrapperForImageClassification, Trainer, TrainerCallback, set_seed

from flowers_hf.core.cli import parse_args, setup_logging
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.exclude import exclude_audited
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.validate import drop_bad_images
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.reporting.publish import check_push_access
from flowers_hf.reporting.run_folder import FinishedRun, save_class_weights, save_config, write_run_folder
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.checkpoints import check_starting_model
from flowers_hf.training.data_path import TrainingData, training_data
from flowers_hf.training.distill import Teacher, TeacherScores, score_teacher
from flowers_hf.training.final_pass import score_trained_model
from flowers_hf.training.frozen_features import frozen_features
from flowers_hf.training.layer_groups import parameter_groups
from flowers_hf.training.stages import TrainedStages, train_stages
from flowers_hf.training.trainer import build_trainer

logger = logging.getLogger("train")

ARGUMENTS = (ModelArguments, DataArguments, TransformArguments, FlowersTrainingArguments)
Arguments = tuple[ModelArguments, DataArguments, TransformArguments, FlowersTrainingArguments]


@dataclass
class Training:
    """A trained model and what trained it: its input contract, data, stages and the Trainer factory."""

    model: TimmWrapperForImageClassification
    prep: Preprocessing
    data: TrainingData
    stages: TrainedStages
    make_trainer: Callable[..., Trainer]
    hub_token: str | None
    teacher: Teacher | None


def main(argv: list[str] | None = None) -> dict[str, float]:
    arguments = parse_args(ARGUMENTS, argv, prog="train.py")
    args = arguments[-1]
    run = train(arguments)

    scores = score_trained_model(run.model, run.data.splits, args, run.make_trainer, run.stages.features)
    # The run folder: weights and config for transformers and timm, reports, plots, model card; the push. With
    # --teacher, the teacher is scored on the same test images (its own preprocessing) for the card.
    if args.should_save:
        teacher = _score_teacher(run, args) if run.teacher is not None else None
        finished = FinishedRun(run.model, run.prep, arguments, run.data, run.stages.results, scores, teacher)
        write_run_folder(finished, Path(args.output_dir), run.hub_token)
    # Under several processes, let them finish together and tear the process group down in order; leaving it to
    # the interpreter's exit can abort a process ("terminate called without an active exception").
    # Trainer.end() (transformers 5.23) is this call; 5.17 has no such method.
    scores.trainer.accelerator.wait_for_everyone()
    scores.trainer.accelerator.end_training()
    return scores.metrics["test"]


def _score_teacher(run: Training, args: FlowersTrainingArguments) -> TeacherScores:
    workers, quiet = args.dataloader_num_workers, args.disable_tqdm
    return score_teacher(run.teacher, run.data.raw["test"], args.per_device_eval_batch_size, workers, quiet)


def train(
    arguments: Arguments, callbacks: Sequence[TrainerCallback] = (), splits: Sequence[str] | None = None
) -> Training:
    """Load the data, build the model and train it stage by stage (frozen backbone first: its features computed
    once); the best stage's best weights end up in the model.

    Args:
        arguments: the parsed ``ARGUMENTS``.
        callbacks: Trainer callbacks added to every stage's Trainer.
        splits: the splits to load and use (default: all the source has); a search leaves ``test`` out.
    """
    args = arguments[-1]
    run = prepare(arguments, callbacks, splits)
    features = frozen_features(run.model, run.data, args, run.prep, run.teacher)
    stages = train_stages(run.model, run.groups, args, run.make_trainer, features)
    return Training(run.model, run.prep, run.data, stages, run.make_trainer, run.hub_token, run.teacher)


@dataclass
class Prepared:
    """Everything a stage's Trainer needs, before any training: the model and its parameter groups, its input
    contract, the data with its transforms, and the Trainer factory."""

    model: TimmWrapperForImageClassification
    groups: list[list[str]]
    prep: Preprocessing
    data: TrainingData
    make_trainer: Callable[..., Trainer]
    hub_token: str | None  # taken out of the arguments (they are pickled into checkpoints): for the push alone
    teacher: Teacher | None  # --teacher, loaded again by every run and resume: checkpoints do not hold it


def prepare(
    arguments: Arguments, callbacks: Sequence[TrainerCallback] = (), splits: Sequence[str] | None = None
) -> Prepared:
    """The run up to its first stage: logging, the output folder, the data, the model and the Trainer factory; the
    arguments and class weights written to the output folder. ``train``'s arguments."""
    model_args, data_args, transform_args, args = arguments
    setup_logging(args.should_log, args.get_process_log_level())
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    hub_token = args.take_hub_token()  # kept here for the push alone: no file the run writes holds it
    if args.push_to_hub and args.should_save:
        check_push_access(args.hub_model_id, hub_token)  # now, not after hours of training
    # --teacher: loaded first, so that a wrong folder or an unreachable Hub stops the run before any work.
    teacher_model = ImageClassifier.from_pretrained(args.teacher, device=str(args.device)) if args.teacher else None

    # Data: any image-classification source with its own class names and identity; images that cannot be decoded
    # are listed in bad_images.json and left out (or stop the run), and with --exclude those an audit flagged.
    with args.main_process_first(desc="loading the data"):
        loaded = load_data(args=data_args)
        raw = loaded.splits if splits is None else DatasetDict({name: loaded.splits[name] for name in splits})
        report_dir = output_dir if args.should_save else None
        raw = drop_bad_images(raw, data_args.on_bad_image, report_dir, num_proc=args.dataloader_num_workers)
        raw = exclude_audited(raw, data_args.exclude, loaded.identity, report_dir)  # --exclude audit.json
    class_names = raw["train"].features["label"].names

    # Model, and the preprocessing its timm data config prescribes; the data path it implies.
    check_starting_model(model_args, class_names)
    set_seed(args.seed)  # the new head (or the whole model) is initialised here, before any Trainer seeds
    model = build_model(model_args, class_names, loaded.identity)
    groups = parameter_groups(model.timm_model)  # before any freezing
    prep = resolve_preprocessing(model.timm_model, transform_args)
    logger.info("Preprocessing: %s", prep)
    data = training_data(raw, prep, data_args, transform_args, args)
    teacher = Teacher(teacher_model, prep, class_names, args.teacher) if teacher_model is not None else None
    if args.should_save:
        save_config(arguments, output_dir)
        path = save_class_weights(data.class_weights, args.class_weights, len(class_names), output_dir)
        logger.info("Class weights (%s, in %s): %s", args.class_weights, path, data.class_weights)
    make_trainer = partial(
        build_trainer, model=model, train_dataset=data.splits["train"], eval_dataset=data.splits["validation"],
        class_weights=data.class_weights, prep=prep, callbacks=callbacks, batch_augment=data.batch_augment,
        teacher=teacher,
    )  # fmt: skip
    return Prepared(model, groups, prep, data, make_trainer, hub_token, teacher)
