"""The peer recipe of ``bench/run.py``: transformers' ``run_image_classification.py`` example as its README runs it.

The recipe: torchvision transforms per batch in ``with_transform``, a plain ``Trainer`` with its default DataLoader
settings (no workers), on the same model, batch size and precision as our path.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
import torchvision.transforms as T
from transformers import Trainer, TrainingArguments

from bench.arguments import BenchArguments
from bench.timing import timed_train
from flowers_hf.data.preprocessing import Preprocessing


def measure_peer(
    args: BenchArguments, model: torch.nn.Module, train: datasets.Dataset, steps: int, output_dir: str
) -> tuple[float, float]:
    """Images/s and CPU ms per image of the ``run_image_classification.py`` recipe on ``train`` (with
    ``PeerTransform`` attached): a plain ``Trainer`` with its default DataLoader settings."""
    training_args = TrainingArguments(
        output_dir=output_dir,
        max_steps=args.warmup_steps + steps,
        per_device_train_batch_size=args.batch_size,
        remove_unused_columns=False,  # as the example's README runs it: the transform reads the image column
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",
        use_cpu=args.device == "cpu",
        torch_compile=args.compile,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        seed=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train, data_collator=peer_collate)
    return timed_train(trainer, args.warmup_steps)


class PeerTransform:
    """The example's training transform: RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize with the image
    processor's size, mean and std (here from the same timm data config), applied to a batch of PIL images."""

    def __init__(self, prep: Preprocessing) -> None:
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(prep.input_size),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(prep.mean, prep.std),
            ]
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        batch["pixel_values"] = [self.transform(image.convert("RGB")) for image in batch["image"]]
        return batch


def peer_collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The example's ``collate_fn``: stacked pixel values, labels as a tensor."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    return {"pixel_values": pixel_values, "labels": torch.tensor([example["label"] for example in examples])}
