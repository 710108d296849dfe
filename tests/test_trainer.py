"""Class-weighted loss: hand computations, gradient accumulation, training accuracy in the logs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import TrainingArguments

from flowers_hf.training.loss import DistillationLoss, TeacherTargets, WeightedCrossEntropy, class_weights_from_counts
from flowers_hf.training.trainer import ClassWeightedTrainer

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
LABELS = torch.tensor([0, 2, 1, 2])
WEIGHTS = torch.tensor([0.5, 2.0, 1.25])


def test_balanced_weights_are_n_over_classes_times_count():
    weights = class_weights_from_counts([10, 30, 60], "balanced")
    # n = 100, 3 classes: 100 / (3 × count)
    assert torch.allclose(weights, torch.tensor([100 / 30, 100 / 90, 100 / 180]))
    # Over the training set the weights average to 1: sum_c count_c × w_c = n.
    assert torch.isclose((weights * torch.tensor([10.0, 30, 60])).sum(), torch.tensor(100.0))


def test_class_without_training_images_gets_weight_one_and_none_gives_no_weights():
    assert class_weights_from_counts([4, 0, 12], "balanced")[1] == 1.0
    assert class_weights_from_counts([4, 0, 12], "none") is None
    with pytest.raises(ValueError, match="balanced"):
        class_weights_from_counts([1, 2], "inverse")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weighted_loss_equals_torch_cross_entropy_with_weights(smoothing):
    loss = WeightedCrossEntropy(WEIGHTS, label_smoothing=smoothing)
    expected = F.cross_entropy(LOGITS, LABELS, weight=WEIGHTS, label_smoothing=smoothing)
    assert torch.isclose(loss({"logits": LOGITS}, LABELS), expected)
    # Normalised by the batch's total weight, the summed form is the same weighted mean.
    total = loss.total_weight(LABELS)
    assert torch.isclose(total, torch.tensor(0.5 + 1.25 + 2.0 + 1.25))
    assert torch.isclose(loss({"logits": LOGITS}, LABELS, num_items_in_batch=total), expected)


def test_weighted_loss_by_hand_for_two_examples():
    logits, labels = LOGITS[:2], LABELS[:2]
    nll = -torch.log_softmax(logits, dim=1)[torch.arange(2), labels]
    by_hand = (0.5 * nll[0] + 1.25 * nll[1]) / (0.5 + 1.25)
    assert torch.isclose(WeightedCrossEntropy(WEIGHTS)({"logits": logits}, labels), by_hand)


def test_unweighted_loss_counts_items():
    loss = WeightedCrossEntropy(None)
    assert loss.total_weight(LABELS) == 4
    assert torch.isclose(loss({"logits": LOGITS}, LABELS), F.cross_entropy(LOGITS, LABELS))


class _Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(6, 3)

    def forward(self, pixel_values, labels=None):
        return {"logits": self.layer(pixel_values)}


# Distillation of the vectors: a teacher's logits stored with each (as a frozen backbone's views are stored).
TEACHER_LOGITS = torch.randn(8, 3, generator=torch.Generator().manual_seed(2)) * 3
ALPHA, TEMPERATURE = 0.3, 2.5


class _StoredOnly:
    """A teacher whose logits come stored with every batch: asked for them, it fails the test."""

    def logits(self, pixels):
        raise AssertionError("the batch's stored teacher logits must be used")


def _vectors(n: int = 8, teacher: bool = False) -> Dataset:
    generator = torch.Generator().manual_seed(1)
    # Imbalanced labels, so that micro-batches differ in total weight.
    labels = [0, 0, 0, 0, 0, 1, 2, 2][:n]
    features = torch.randn(n, 6, generator=generator)
    columns = {"pixel_values": features.tolist(), "labels": labels}
    if teacher:
        columns["teacher_logits"] = TEACHER_LOGITS[:n].tolist()
    return Dataset.from_dict(columns).with_format("torch")


def _one_step(tmp_path, batch_size: int, accumulation: int, distill: bool = False) -> torch.Tensor:
    model = _Linear()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,  # keep teacher_logits, which the model's forward does not take
    )
    trainer = ClassWeightedTrainer(
        model=model,
        args=args,
        train_dataset=_vectors(teacher=distill),
        loss=WeightedCrossEntropy(WEIGHTS),
        teacher=_StoredOnly() if distill else None,
        distill_alpha=ALPHA,
        distill_temperature=TEMPERATURE,
    )
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    return model.layer.weight.detach().clone()


def _distillation_by_hand(logits, teacher_logits, labels):
    """α · weighted CE + (1 − α) · T² · the weighted mean of KL(teacher_T ‖ student_T), written out."""
    teacher = torch.softmax(teacher_logits / TEMPERATURE, -1)
    student = torch.log_softmax(logits / TEMPERATURE, -1)
    kl = (teacher * (teacher.log() - student)).sum(-1)
    weights = WEIGHTS[labels]
    soft = (weights * kl).sum() / weights.sum()
    return ALPHA * F.cross_entropy(logits, labels, weight=WEIGHTS) + (1 - ALPHA) * TEMPERATURE**2 * soft


def _expected_step(learning_rate: float = 0.5, distill: bool = False) -> torch.Tensor:
    """One SGD step on the weighted mean loss of all 8 examples (cross-entropy, or distillation), by hand."""
    model, data = _Linear(), _vectors()[:]
    logits = model(data["pixel_values"])["logits"]
    if distill:
        loss = _distillation_by_hand(logits, TEACHER_LOGITS, data["labels"])
    else:
        loss = F.cross_entropy(logits, data["labels"], weight=WEIGHTS)
    loss.backward()
    return (model.layer.weight - learning_rate * model.layer.weight.grad).detach()


@pytest.mark.parametrize("distill", [False, True], ids=["cross_entropy", "distillation"])
def test_gradient_accumulation_gives_the_one_big_batch_update(tmp_path, distill):
    expected = _expected_step(distill=distill)
    assert not torch.allclose(expected, _Linear().layer.weight.detach())
    assert not torch.allclose(expected, _expected_step(distill=not distill))  # the two losses step apart
    # The micro-batches differ in total class weight; each must still count as part of one weighted mean.
    big = _one_step(tmp_path / "big", batch_size=8, accumulation=1, distill=distill)
    assert torch.allclose(big, expected, atol=1e-6)
    accumulated = _one_step(tmp_path / "acc", batch_size=2, accumulation=4, distill=distill)
    assert torch.allclose(accumulated, expected, atol=1e-6)


def test_the_distillation_loss_equals_its_formula_by_hand():
    distillation = DistillationLoss(WeightedCrossEntropy(WEIGHTS), ALPHA, TEMPERATURE)
    teacher = TEACHER_LOGITS[:4]
    loss = distillation({"logits": LOGITS}, TeacherTargets(LABELS, teacher))
    assert torch.isclose(loss, _distillation_by_hand(LOGITS, teacher, LABELS))
    # The KL term alone, by hand for the first image: Σ_c p_c (log p_c − log q_c) at temperature T.
    p, q = torch.softmax(teacher[0] / TEMPERATURE, -1), torch.softmax(LOGITS[0] / TEMPERATURE, -1)
    kl = distillation.kl_divergence(LOGITS[:1], teacher[:1], LABELS[:1])
    assert torch.isclose(kl, (p * (p / q).log()).sum())
    # A teacher that agrees with the student adds nothing; plain labels (evaluation) get the cross-entropy alone.
    assert torch.isclose(distillation.kl_divergence(LOGITS, LOGITS, LABELS), torch.tensor(0.0), atol=1e-7)
    assert torch.equal(
        distillation({"logits": LOGITS}, LABELS), WeightedCrossEntropy(WEIGHTS)({"logits": LOGITS}, LABELS)
    )


def test_alpha_one_is_the_cross_entropy_exactly():
    cross_entropy = WeightedCrossEntropy(WEIGHTS)
    loss = DistillationLoss(cross_entropy, 1.0, TEMPERATURE)({"logits": LOGITS}, TeacherTargets(LABELS, -LOGITS))
    assert torch.equal(loss, cross_entropy({"logits": LOGITS}, LABELS))


@pytest.mark.slow
def test_two_processes_give_the_one_big_batch_update(tmp_path):
    # DDP averages gradients over processes; each must divide by the total weight of both processes' batches.
    script = Path(__file__).parent / "ddp_weighted_step.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(script.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.allclose(torch.load(tmp_path / "weight.pt"), _expected_step(), atol=1e-6)
    # With a teacher (its logits stored with the examples), the distillation term is one weighted mean too.
    assert torch.allclose(torch.load(tmp_path / "weight_distill.pt"), _expected_step(distill=True), atol=1e-6)


class _Recording(_Linear):
    """Keeps the top-1 prediction of every training forward pass, as the step saw it (before its update)."""

    def __init__(self) -> None:
        super().__init__()
        self.predicted: list[torch.Tensor] = []

    def forward(self, pixel_values, labels=None):
        outputs = super().forward(pixel_values, labels)
        if self.training:
            self.predicted.append(outputs["logits"].argmax(-1).detach().clone())
        return outputs


def test_training_logs_include_accuracy(tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        learning_rate=1.0,  # large steps: the predictions change from one batch to the next
        optim="sgd",
        lr_scheduler_type="constant",
        logging_strategy="epoch",
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    model = _Recording()
    trainer = ClassWeightedTrainer(model=model, args=args, train_dataset=_vectors(), loss=WeightedCrossEntropy())
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    logged = [record["train_accuracy"] for record in trainer.state.log_history if "train_accuracy" in record]
    # By hand: each epoch's 8 predictions (two batches of 4, in order) against the labels, counted afresh each epoch.
    labels = _vectors()[:]["labels"]
    assert len(model.predicted) == 4
    by_hand = [
        round(float((torch.cat(model.predicted[2 * epoch : 2 * epoch + 2]) == labels).float().mean()), 4)
        for epoch in range(2)
    ]
    assert logged == by_hand
    assert by_hand[0] != by_hand[1]  # so that counts carried over from epoch 1 would give a wrong epoch 2


def test_backbone_learning_rate_scale_splits_head_and_backbone(tmp_path):
    from flowers_hf.model.arguments import ModelArguments
    from flowers_hf.model.modeling import build_model

    model = build_model(ModelArguments(model="test_resnet", pretrained=False), ["a", "b", "c"])
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.01, report_to=[])
    trainer = ClassWeightedTrainer(
        model=model, args=args, loss=WeightedCrossEntropy(), backbone_learning_rate_scale=0.1
    )
    optimizer = trainer.create_optimizer()
    head = {id(p) for p in model.timm_model.fc.parameters()}
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(rates) == len(list(model.parameters()))  # every parameter once
    assert {rates[i] for i in head} == {1e-3}
    assert all(rate == pytest.approx(1e-4) for i, rate in rates.items() if i not in head)
    decays = {group["weight_decay"] for group in optimizer.param_groups}
    assert decays == {0.0, 0.01}  # the Trainer's decay / no-decay split survives
