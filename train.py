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

import dataclasses
import logging
import sys
from functools import partial
from pathlib import Path

from transformers import set_seed

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.data import label_counts, load_data
from flowers_hf.data.arguments import DataArguments, TransformArguments
from flowers_hf.data.cache import cache_splits
from flowers_hf.data.holdout import HELD_OUT
from flowers_hf.data.load import identify_loaded
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import BatchTransform, build_eval_transform, build_train_transform, with_transforms
from flowers_hf.data.validate import drop_bad_images
from flowers_hf.evaluation.calibration import calibrate_model
from flowers_hf.evaluation.scoring import score_split
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.reporting.publish import check_push_access
from flowers_hf.reporting.run_folder import FinishedRun, save_class_weights, save_config, write_run_folder
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.checkpoints import check_starting_model
from flowers_hf.training.frozen_features import FeatureSources, FrozenFeatures, is_head_only, predict_split
from flowers_hf.training.layer_groups import parameter_groups, set_trainable
from flowers_hf.training.loss import class_weights_from_counts
from flowers_hf.training.stages import best_stage, load_checkpoint_weights, plan_stages, run_stage
from flowers_hf.training.trainer import build_trainer

logger = logging.getLogger("train")

ARGUMENTS = (ModelArguments, DataArguments, TransformArguments, FlowersTrainingArguments)


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, transform_args, args = parse_args(ARGUMENTS, argv, prog="train.py")
    setup_logging(args.should_log, args.get_process_log_level())
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.push_to_hub and args.should_save:
        check_push_access(args.hub_model_id, args.hub_token)  # now, not after hours of training

    # Data: any image-classification source, with its own class names (Flowers-102's canonical ones for a Flowers-102
    # source); images that cannot be decoded are listed in bad_images.json and left out (or stop the run).
    with args.main_process_first(desc="loading the data"):
        raw = load_data(args=data_args)
        dataset = identify_loaded(data_args.dataset, data_args, raw)
        report_dir = output_dir if args.should_save else None
        raw = drop_bad_images(raw, data_args.on_bad_image, report_dir, num_proc=args.dataloader_num_workers)
    class_names = raw["train"].features["label"].names

    # Model, and the preprocessing its timm data config prescribes.
    check_starting_model(model_args, class_names)
    set_seed(args.seed)  # the new head (or the whole model) is initialised here, before any Trainer seeds
    model = build_model(model_args, class_names, dataset)
    groups = parameter_groups(model.timm_model)  # before any freezing
    prep = resolve_preprocessing(model.timm_model, transform_args)
    logger.info("Preprocessing: %s", prep)
    # The data path: every image decoded once (--cache_images), uint8 tensors out of the workers, normalised on the
    # device by the Trainer.
    train_transform = build_train_transform(prep, transform_args, seed=args.seed, normalize=False)
    with args.main_process_first(desc="decoding the images once"):
        splits = cache_splits(raw, prep, args.dataloader_num_workers or None) if data_args.cache_images else raw
    eval_transform = build_eval_transform(prep, normalize=False, cropped=data_args.cache_images)
    data = with_transforms(splits, train_transform, eval_transform)

    # Loss weights from the training split's label counts; the resolved configuration.
    weights = class_weights_from_counts(label_counts(raw["train"], len(class_names)), args.class_weights)
    if args.should_save:
        save_config((model_args, data_args, transform_args, args), output_dir)
        path = save_class_weights(weights, args.class_weights, len(class_names), output_dir)
        logger.info("Class weights (%s, in %s): %s", args.class_weights, path, weights)

    # Train stage by stage; each stage ends on its best checkpoint, and the best stage wins.
    make_trainer = partial(
        build_trainer, model=model, train_dataset=data["train"], eval_dataset=data["validation"],
        class_weights=weights, prep=prep,
    )  # fmt: skip
    # With the backbone frozen, evaluations (and with --probe_views training) run the classifier on its features.
    features = None
    if args.freeze_backbone and args.frozen_features:
        train_plain = splits["train"].with_transform(BatchTransform(build_eval_transform(prep, normalize=False)))
        sources = FeatureSources(data["train"], train_plain, {name: data[name] for name in data if name != "train"})
        features = FrozenFeatures(model, sources, args, prep)
    stages = plan_stages(args, len(groups))
    results = [run_stage(stage, model, groups, args, make_trainer, features) for stage in stages]
    best = best_stage(results, args.greater_is_better)
    if best is not results[-1]:
        logger.info("Stage %d scored best on validation; going back to its best checkpoint", best.stage.number)
        set_trainable(model.timm_model, groups, best.stage.trainable_groups)
        load_checkpoint_weights(model, best.best_checkpoint)
    if not (features is not None and is_head_only(best.stage.trainable_groups) and features.available()):
        features = None

    # Validation and test predictions of the best model. Temperature scaling and the "unsure" threshold are fitted on
    # validation and folded into the model's head: the saved model's probabilities come out calibrated; the argmax,
    # hence every score, is unchanged. Both splits are scored as `python -m flowers_hf.evaluate` scores them.
    trainer = make_trainer(dataclasses.replace(args, dataloader_num_workers=0) if features else args)
    predict = partial(predict_split, trainer, data, features=features)
    validation = predict("validation", "eval")
    test = predict("test", "test")
    # --holdout_classes: the held-out classes' test images, scored in the run folder as `evaluate --ood` scores a set.
    held_out = predict(HELD_OUT, HELD_OUT).predictions if HELD_OUT in data else None
    calibration = calibrate_model(model, validation.predictions, validation.label_ids)
    metrics = {}
    for split, output in (("eval", validation), ("test", test)):
        metrics[split] = output.metrics | score_split(output.predictions, output.label_ids, calibration, split)
        trainer.log_metrics(split, {key: value for key, value in metrics[split].items() if value is not None})
        trainer.save_metrics(split, metrics[split])

    # The run folder: weights and config for transformers and timm, reports, plots, model card; the push.
    if args.should_save:
        run = FinishedRun(
            model=model,
            prep=prep,
            arguments=(model_args, data_args, transform_args, args),
            data=raw,
            train_transform=train_transform,
            stages=results,
            metrics=metrics,
            validation=(validation.predictions, validation.label_ids),
            test=(test.predictions, test.label_ids),
            calibration=calibration,
            held_out=held_out,
        )
        write_run_folder(run, output_dir)
    # Under several processes, let them finish together and tear the process group down in order; leaving it to
    # the interpreter's exit can abort a process ("terminate called without an active exception").
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    return metrics["test"]


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
