"""The transformed splits feed transformers' Trainer as they are (a tiny stand-in model; training is its own issue)."""

import pytest
import timm
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, build_train_transform, with_transforms


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = timm.create_model("test_resnet", pretrained=False, num_classes=num_classes)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.body(pixel_values)
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.cross_entropy(logits, labels)
        return output


def _args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=0.1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    return TrainingArguments(**{**defaults, **overrides})


def test_trainer_trains_on_the_transformed_splits(tiny_synthetic, tmp_path):
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    data = with_transforms(tiny_synthetic, build_train_transform(prep, seed=0), build_eval_transform(prep))
    model = TinyClassifier(num_classes=4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=data["train"], eval_dataset=data["validation"])
    result = trainer.train()
    assert result.global_step == 2
    assert torch.isfinite(torch.tensor(result.training_loss))
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert len(changed) == len(before)
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))


def test_trainer_that_drops_the_image_column_fails_with_the_fix(tiny_synthetic, tmp_path):
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    data = with_transforms(tiny_synthetic, build_train_transform(prep, seed=0), build_eval_transform(prep))
    trainer = Trainer(
        model=TinyClassifier(4), args=_args(tmp_path, remove_unused_columns=True), train_dataset=data["train"]
    )
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        trainer.train()
