"""Training against the gap: soft-target loss, mixup/CutMix in training only, EMA of the weights, strong policy."""

import shutil
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import ROOT
from PIL import Image
from safetensors.torch import load_file
from test_trainer import LABELS, LOGITS, WEIGHTS, _expected_step, _Linear, _vectors
from transformers import TrainerCallback, TrainingArguments

import train
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.mixup import build_mixer
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_train_transform, collate_fn
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.ema import TRAINING_WEIGHTS, EmaCallback
from flowers_hf.training.loss import WeightedCrossEntropy
from flowers_hf.training.trainer import ClassWeightedTrainer

# Soft targets in the class-weighted loss


def test_one_hot_soft_targets_give_the_hard_label_loss():
    loss = WeightedCrossEntropy(WEIGHTS)
    one_hot = F.one_hot(LABELS, 3).float()
    assert torch.isclose(loss({"logits": LOGITS}, one_hot), loss({"logits": LOGITS}, LABELS))
    assert torch.isclose(loss.total_weight(one_hot), loss.total_weight(LABELS))
    total = loss.total_weight(LABELS)
    assert torch.isclose(
        loss({"logits": LOGITS}, one_hot, num_items_in_batch=total),
        loss({"logits": LOGITS}, LABELS, num_items_in_batch=total),
    )


def test_soft_target_loss_weights_each_image_by_its_mixed_class_weight():
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    log_p = torch.log_softmax(LOGITS[:2], dim=1)
    ce = -(targets * log_p).sum(1)
    weight = torch.tensor([0.7 * 0.5 + 0.3 * 2.0, 0.4 * 2.0 + 0.6 * 1.25])
    by_hand = (weight * ce).sum() / weight.sum()
    loss = WeightedCrossEntropy(WEIGHTS, label_smoothing=0.1)  # smoothing is for hard labels only
    assert torch.isclose(loss({"logits": LOGITS[:2]}, targets), by_hand)
    assert torch.isclose(loss.total_weight(targets), weight.sum())
    assert torch.isclose(WeightedCrossEntropy()({"logits": LOGITS[:2]}, targets), ce.mean())


class _SmoothedTargets:
    """A deterministic soft-target mixer: label smoothing 0.1 as timm's Mixup gives it for an unmixed batch."""

    def __call__(self, pixels, labels):
        return pixels, F.one_hot(labels, 3).float() * 0.9 + 0.1 / 3


def test_gradient_accumulation_with_soft_targets_gives_the_one_big_batch_update(tmp_path):
    def one_step(batch_size: int, accumulation: int) -> torch.Tensor:
        model = _Linear()
        args = TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
            max_steps=1, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", report_to=[],
            save_strategy="no", use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        trainer = ClassWeightedTrainer(
            model=model, args=args, train_dataset=_vectors(), loss=WeightedCrossEntropy(WEIGHTS),
            data_collator=collate_fn, mixer=_SmoothedTargets(),
        )  # fmt: skip
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
        trainer.train()
        return model.layer.weight.detach().clone()

    model, data = _Linear(), _vectors()[:]
    targets = F.one_hot(data["labels"], 3).float() * 0.9 + 0.1 / 3
    WeightedCrossEntropy(WEIGHTS)({"logits": model(data["pixel_values"])["logits"]}, targets).backward()
    expected = (model.layer.weight - 0.5 * model.layer.weight.grad).detach()
    assert not torch.allclose(expected, _expected_step())  # the smoothed targets do change the step
    assert torch.allclose(one_step(batch_size=8, accumulation=1), expected, atol=1e-6)
    assert torch.allclose(one_step(batch_size=2, accumulation=4), expected, atol=1e-6)


def test_training_accuracy_on_soft_targets_counts_their_largest_class(tmp_path):
    def logged_accuracy(mixer) -> list[float]:
        args = TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2, logging_strategy="epoch",
            report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        trainer = ClassWeightedTrainer(
            model=_Linear(), args=args, train_dataset=_vectors(), loss=WeightedCrossEntropy(),
            data_collator=collate_fn, mixer=mixer,
        )  # fmt: skip
        trainer.train()
        return [r["train_accuracy"] for r in trainer.state.log_history if "train_accuracy" in r]

    # Smoothed one-hot targets have the label as their largest class: the same accuracy as hard labels.
    hard, soft = logged_accuracy(None), logged_accuracy(_SmoothedTargets())
    assert len(soft) == 2 and soft == hard and max(soft) > 0


# Mixup and CutMix on the device, for training batches only


def _flat_batch(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    # Image i is flat with value 10 * label, so a mixed image shows its mixing weight.
    return torch.stack([torch.full((3, 4, 4), 10.0 * y) for y in labels]), torch.tensor(labels)


def test_mixup_mixes_pairs_and_leaves_the_odd_last_image_alone():
    np.random.seed(0)
    mix = build_mixer(num_classes=4, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1)
    pixels, targets = mix(*_flat_batch([0, 1, 2, 3, 1]))
    assert targets.shape == (5, 4) and torch.allclose(targets.sum(1), torch.ones(5))
    lam = (targets[0, 0] - 0.1 / 4) / 0.9  # image 0 is mixed with image 3: lam × label 0 + (1 - lam) × label 3
    assert 0 < lam < 1
    assert torch.allclose(pixels[0], lam * 0.0 + (1 - lam) * 30.0)
    assert torch.allclose(pixels[1], lam * 10.0 + (1 - lam) * 20.0)
    # The fifth image has no partner: its own pixels, its smoothed one-hot target.
    assert torch.equal(pixels[4], torch.full((3, 4, 4), 10.0))
    assert torch.allclose(targets[4], torch.tensor([0.025, 0.925, 0.025, 0.025]))


def test_cutmix_pastes_a_box_and_sets_the_targets_to_its_area():
    np.random.seed(1)
    mix = build_mixer(num_classes=2, mixup_alpha=0.0, cutmix_alpha=1.0)
    pixels, targets = mix(torch.stack([torch.full((3, 32, 32), float(y)) for y in (0, 1)]), torch.tensor([0, 1]))
    pasted = pixels[0, 0].mean()  # share of image 0 now showing image 1
    assert torch.allclose(targets[0], torch.stack([1 - pasted, pasted]))


def test_trainer_mixes_training_batches_only(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], use_cpu=True)
    mixer = build_mixer(num_classes=3, mixup_alpha=0.2, cutmix_alpha=0.0, label_smoothing=0.1)
    trainer = ClassWeightedTrainer(
        model=_Linear(), args=args, train_dataset=_vectors(), eval_dataset=_vectors(), loss=WeightedCrossEntropy(),
        data_collator=collate_fn, mixer=mixer,
    )  # fmt: skip
    images = {"pixel_values": torch.rand(4, 3, 8, 8), "labels": torch.tensor([0, 1, 2, 0])}
    (train_batch,), total = trainer.get_batch_samples(iter([images]), 1, torch.device("cpu"))
    assert train_batch["labels"].shape == (4, 3) and train_batch["labels"].is_floating_point()
    assert total == pytest.approx(4.0)  # unweighted: the soft targets' weights sum to one each
    eval_batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    assert eval_batch["labels"].shape == (8,) and eval_batch["labels"].dtype == torch.long


# EMA of the weights


class _Recorder(TrainerCallback):
    """After each step (behind the EMA callback): the live weights and the EMA's."""

    def __init__(self, ema: EmaCallback) -> None:
        self.ema, self.live, self.averaged = ema, [], []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        live, averaged = (model, self.ema.ema.module) if not self.ema._swapped else (self.ema.ema.module, model)
        self.live.append({k: v.clone() for k, v in live.state_dict().items()})
        self.averaged.append({k: v.clone() for k, v in averaged.state_dict().items()})


def _ema_trainer(output: Path, decay: float = 0.5, **kwargs) -> tuple[ClassWeightedTrainer, _Recorder]:
    ema = EmaCallback(decay, warmup=False)
    recorder = _Recorder(ema)
    options = {"save_strategy": "no", "eval_strategy": "no", **kwargs}
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=2, max_steps=4, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", report_to=[], use_cpu=True, disable_tqdm=True, seed=0, **options,
    )  # fmt: skip
    trainer = ClassWeightedTrainer(
        model=_Linear(), args=args, train_dataset=_vectors(), eval_dataset=_vectors(), loss=WeightedCrossEntropy(),
        callbacks=[ema, recorder],
    )  # fmt: skip
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    return trainer, recorder


def test_ema_follows_timms_decay_rule_and_ends_in_the_model(tmp_path):
    trainer, seen = _ema_trainer(tmp_path)
    trainer.train()
    # timm: decay 0 at the first step (the EMA starts as the weights), then ema = d·ema + (1 - d)·weights.
    live, averaged = [w["layer.weight"] for w in seen.live], [w["layer.weight"] for w in seen.averaged]
    assert torch.equal(averaged[0], live[0])
    for step in (1, 2, 3):
        assert torch.allclose(averaged[step], 0.5 * averaged[step - 1] + 0.5 * live[step], atol=1e-7)
    assert not torch.allclose(averaged[3], live[3], atol=1e-4)
    assert torch.equal(trainer.model.layer.weight.detach(), averaged[3])  # the trained model is the EMA


def _checkpoint(folder: Path, name: str = "model.safetensors") -> torch.Tensor:
    return load_file(str(folder / name))["layer.weight"]


def test_ema_is_evaluated_and_saved_and_resuming_restores_both_weights(tmp_path):
    options = {"save_strategy": "steps", "save_steps": 2, "eval_strategy": "steps", "eval_steps": 1}
    trainer, seen = _ema_trainer(tmp_path / "run", **options)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert torch.equal(_checkpoint(checkpoint), seen.averaged[1]["layer.weight"])
    assert torch.equal(_checkpoint(checkpoint, TRAINING_WEIGHTS), seen.live[1]["layer.weight"])
    # Validation scored the EMA, also at step 3, which saved nothing.
    eval_loss = next(r["eval_loss"] for r in trainer.state.log_history if r.get("step") == 3 and "eval_loss" in r)
    model, data = _Linear(), _vectors()[:]
    model.load_state_dict(seen.averaged[2])
    by_hand = F.cross_entropy(model(data["pixel_values"])["logits"], data["labels"]).item()
    assert eval_loss == pytest.approx(by_hand, rel=1e-5)
    # Evaluating and saving the EMA left training alone: the same weights as a run that did neither.
    plain, unsaved = _ema_trainer(tmp_path / "plain")
    plain.train()
    assert torch.equal(seen.live[-1]["layer.weight"], unsaved.live[-1]["layer.weight"])
    assert torch.equal(seen.averaged[-1]["layer.weight"], unsaved.averaged[-1]["layer.weight"])
    # Killed after step 2: resuming gives the live and EMA weights of the run that went on.
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copytree(checkpoint, copy / "checkpoint-2")
    resumed, again = _ema_trainer(copy, **options)
    resumed.train(resume_from_checkpoint=str(copy / "checkpoint-2"))
    for key in ("layer.weight", "layer.bias"):
        assert torch.allclose(again.live[-1][key], seen.live[-1][key], atol=1e-7)
        assert torch.allclose(again.averaged[-1][key], seen.averaged[-1][key], atol=1e-7)
    assert torch.equal(_checkpoint(copy / "checkpoint-4"), _checkpoint(tmp_path / "run" / "checkpoint-4"))


# The strong augmentation policy


def test_strong_policy_adds_photo_shifts_and_the_default_stays_as_it_was():
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    shifts = (A.Perspective, A.PlanckianJitter, A.ImageCompression, A.Erasing, A.OneOf)
    default = build_train_transform(prep, TransformArguments(), seed=0)
    strong = build_train_transform(prep, TransformArguments(augment="strong"), seed=0)
    assert not any(isinstance(t, shifts) for t in default.pipeline.transforms)
    assert sum(isinstance(t, shifts) for t in strong.pipeline.transforms) == 7
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    out = strong(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="--augment"):
        TransformArguments(augment="heavy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mixup_alpha": -0.1}, "--mixup_alpha"), ({"mixup_prob": 1.5}, "--mixup_prob"),
     ({"ema_decay": 1.0}, "--ema_decay"), ({"cutmix_alpha": 1.0, "per_device_train_batch_size": 5}, "even")],
)  # fmt: skip
def test_bad_robust_options_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowersTrainingArguments(output_dir=str(tmp_path), report_to=[], **kwargs)


# The presets, end to end


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["robust.yaml", "quickstart_robust.yaml"])
def test_robust_presets_start_training_with_ema_checkpoints(preset, tmp_path):
    argv = [
        "--config", str(ROOT / "configs" / preset), "--output_dir", str(tmp_path), "--pretrained", "false",
        "--model", "test_resnet", "--dataset", "synthetic", "--synthetic_num_classes", "4",
        "--synthetic_images_per_class", "8", "--synthetic_image_size", "32", "--image_size", "32", "--max_steps", "1",
        "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--dataloader_persistent_workers",
        "false", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip
    metrics = train.main(argv)
    assert "test_accuracy" in metrics
    checkpoint = tmp_path / "stage1" / "checkpoint-1"
    assert (checkpoint / TRAINING_WEIGHTS).is_file()
    # The run folder holds the best checkpoint's EMA (its head then gets the calibration temperature folded in).
    final = load_file(str(tmp_path / "model.safetensors"))
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert torch.equal(final["conv1.0.weight"], saved["timm_model.conv1.0.weight"])
    config = yaml.safe_load((tmp_path / "train_config.yaml").read_text())
    assert config["augment"] == "strong" and config["cutmix_alpha"] == 1.0 and config["ema_decay"] == 0.999
