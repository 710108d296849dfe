"""Train a timm image classifier with the HF Trainer: Oxford Flowers-102 by default, any data set with --dataset.

    python train.py --config configs/quickstart.yaml                    # offline: synthetic data, random init
    python train.py --config configs/resnet18.yaml                      # ResNet18 linear probe (needs the Hub)
    accelerate launch --config_file accelerate_config.yaml train.py --config configs/efficientnet_b3.yaml
    python train.py --model resnet18 --dataset /data/oxford-flowers102 --output_dir runs/r18 --max_steps 100
    python train.py --config configs/resnet18_finetune.yaml --dataset beans --output_dir runs/beans  # another data set
    python train.py --config configs/resnet18_finetune.yaml --push_to_hub --hub_model_id USER/NAME  # and publish

Every TrainingArguments flag works; flags override the --config preset. Rerunning a command on an output
folder with checkpoints resumes from the last complete one; Ctrl-C writes a checkpoint before it stops.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

from transformers import set_seed

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.exclude import exclude_audited
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.validate import drop_bad_images
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.reporting.publish import check_push_access
from flowers_hf.reporting.run_folder import FinishedRun, save_class_weights, save_config, write_run_folder
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.checkpoints import check_starting_model
from flowers_hf.training.data_path import training_data
from flowers_hf.training.final_pass import score_trained_model
from flowers_hf.training.frozen_features import frozen_features
from flowers_hf.training.layer_groups import parameter_groups
from flowers_hf.training.stages import train_stages
from flowers_hf.training.trainer import build_trainer

logger = logging.getLogger("train")

ARGUMENTS = (ModelArguments, DataArguments, TransformArguments, FlowersTrainingArguments)


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, transform_args, args = arguments = parse_args(ARGUMENTS, argv, prog="train.py")
    setup_logging(args.should_log, args.get_process_log_level())
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.push_to_hub and args.should_save:
        check_push_access(args.hub_model_id, args.hub_token)  # now, not after hours of training

    # Data: any image-classification source with its own class names and identity; images that cannot be decoded
    # are listed in bad_images.json and left out (or stop the run), and with --exclude those an audit flagged.
    with args.main_process_first(desc="loading the data"):
        loaded = load_data(args=data_args)
        report_dir = output_dir if args.should_save else None
        raw = drop_bad_images(loaded.splits, data_args.on_bad_image, report_dir, num_proc=args.dataloader_num_workers)
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
    if args.should_save:
        save_config(arguments, output_dir)
        path = save_class_weights(data.class_weights, args.class_weights, len(class_names), output_dir)
        logger.info("Class weights (%s, in %s): %s", args.class_weights, path, data.class_weights)

    # Train stage by stage (frozen backbone first: its features computed once), then score the best model.
    make_trainer = partial(
        build_trainer, model=model, train_dataset=data.splits["train"], eval_dataset=data.splits["validation"],
        class_weights=data.class_weights, prep=prep,
    )  # fmt: skip
    trained = train_stages(model, groups, args, make_trainer, frozen_features(model, data, args, prep))
    scores = score_trained_model(model, data.splits, args, make_trainer, trained.features)

    # The run folder: weights and config for transformers and timm, reports, plots, model card; the push.
    if args.should_save:
        write_run_folder(FinishedRun(model, prep, arguments, data, trained.results, scores), output_dir)
    # Under several processes, let them finish together and tear the process group down in order; leaving it to
    # the interpreter's exit can abort a process ("terminate called without an active exception").
    scores.trainer.accelerator.wait_for_everyone()
    scores.trainer.end()
    return scores.metrics["test"]


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
