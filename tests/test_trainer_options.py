"""The Trainer options users train with on a GPU, on the CPU with the TimmWrapper model and ``build_trainer``'s
Trainer: gradient checkpointing, ``--auto_find_batch_size`` and gradient accumulation with the class-weighted loss.
(``--torch_compile``: ``bench/compile.py``, run by the dry GPU check in test_bench.py and test_oldest.py.)"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from datasets import DatasetDict
from transformers import set_seed

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, normalize_pixels, with_transforms
from flowers_hf.model.arguments import ModelArguments
from flowers_hf.model.modeling import build_model
from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.trainer import ClassWeightedTrainer, build_trainer

WEIGHTS = torch.tensor([0.5, 2.0, 1.25, 1.0])  # unequal, so that micro-batches differ in total weight


@pytest.fixture(scope="module")
def option_data(tiny_synthetic) -> DatasetDict:
    """24 images of 4 classes as training data, classes interleaved (0 1 2 3 0 1 …); uint8 batches through the eval
    transform, so that every run sees the same pixels in the same order."""
    order = [k + 6 * label for k in range(6) for label in range(4)]  # the test split lists each class's 6 in turn
    splits = DatasetDict({"train": tiny_synthetic["test"].select(order), "validation": tiny_synthetic["validation"]})
    prep = resolve_preprocessing("test_resnet", TransformArguments(image_size=32))
    plain = build_eval_transform(prep, normalize=False)
    return with_transforms(splits, plain, plain)


@pytest.fixture
def make_trainer(option_data, tmp_path):
    """A fresh, seeded TimmWrapper model (``test_resnet`` unless named) and its Trainer as ``train.py`` builds it
    (``build_trainer``: the class-weighted loss, uint8 batches normalised on the device), batches in order."""

    def make(model: str = "test_resnet", **overrides) -> ClassWeightedTrainer:
        names = option_data["train"].features["label"].names
        set_seed(0)
        classifier = build_model(ModelArguments(model=model, pretrained=False), names)
        prep = resolve_preprocessing(classifier.timm_model, TransformArguments(image_size=32))
        options = dict(
            output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=8, learning_rate=0.1,
            lr_scheduler_type="constant", optim="sgd", report_to=[], dataloader_num_workers=0, eval_strategy="no",
            save_strategy="no", load_best_model_at_end=False, early_stopping_patience=0, disable_tqdm=True, seed=0,
        )  # fmt: skip
        args = FlowersTrainingArguments(**{**options, **overrides})
        trainer = build_trainer(args, classifier, option_data["train"], option_data["validation"], WEIGHTS, prep=prep)
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
        return trainer

    return make


def _saved_for_backward_bytes(trainer: ClassWeightedTrainer) -> tuple[int, float]:
    """Train (one step): the bytes autograd holds for the backward pass, counted once per storage, and the loss.
    These activations are what checkpointing frees; the weights, gradients and optimizer state are the same."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = trainer.train().training_loss
    return sum(storages.values()), loss


def _parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gradient_checkpointing_reaches_timm_and_holds_less_memory_at_equal_loss(make_trainer):
    plain = make_trainer()
    plain_bytes, plain_loss = _saved_for_backward_bytes(plain)

    with warnings.catch_warnings():  # transformers 5.23 renames it activation_checkpointing; 5.17 knows only this
        warnings.simplefilter("ignore", FutureWarning)
        checkpointed = make_trainer(gradient_checkpointing=True)
    calls = []
    timm_model = checkpointed.model.timm_model
    original = timm_model.set_grad_checkpointing
    timm_model.set_grad_checkpointing = lambda enable=True: calls.append(enable) or original(enable)
    checkpointed_bytes, checkpointed_loss = _saved_for_backward_bytes(checkpointed)

    # TimmWrapperForImageClassification hands the Trainer's request to timm, whose blocks then recompute.
    assert calls == [True] and timm_model.grad_checkpointing
    assert checkpointed_bytes < 0.6 * plain_bytes, (checkpointed_bytes, plain_bytes)  # 1.5 MB against 3.4 MB
    assert checkpointed_loss == pytest.approx(plain_loss, rel=1e-6)
    assert torch.allclose(_parameters(checkpointed.model), _parameters(plain.model), atol=1e-6)  # the same step


def test_auto_find_batch_size_shrinks_after_an_out_of_memory_error_and_trains(make_trainer):
    trainer = make_trainer(auto_find_batch_size=True, per_device_train_batch_size=3, max_steps=2)
    seen = []

    def fits(module, args, kwargs):  # a GPU that holds two images at a time
        batch = kwargs["pixel_values"].shape[0]
        seen.append(batch)
        if batch > 2:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch} images")

    trainer.model.register_forward_pre_hook(fits, with_kwargs=True)
    before = _parameters(trainer.model)
    result = trainer.train()
    # accelerate's find_executable_batch_size (1.15) retries at int(0.9 × size): 3 fails, then two steps of 2.
    assert seen == [3, 2, 2]
    assert trainer._train_batch_size == 2 and trainer.state.train_batch_size == 2
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.allclose(_parameters(trainer.model), before)


def test_gradient_accumulation_with_the_weighted_loss_equals_the_large_batch(make_trainer, option_data):
    # test_convnext: LayerNorm, no BatchNorm, whose batch statistics would make micro-batches differ whatever the
    # loss; its examples are independent within a batch, so one step of 8 and four of 2 accumulated must agree.
    big = make_trainer("test_convnext", per_device_train_batch_size=8)
    initial = _parameters(big.model)
    big_loss = big.train().training_loss
    accumulated = make_trainer("test_convnext", per_device_train_batch_size=2, gradient_accumulation_steps=4)
    accumulated_loss = accumulated.train().training_loss

    # By hand: the weighted mean cross-entropy of the first 8 images under the initial weights.
    set_seed(0)
    model = build_model(ModelArguments(model="test_convnext", pretrained=False), list("abcd")).eval()
    batch = option_data["train"][:8]
    prep = resolve_preprocessing(model.timm_model, TransformArguments(image_size=32))
    pixels = normalize_pixels(batch["pixel_values"], prep.mean, prep.std)
    by_hand = F.cross_entropy(model(pixel_values=pixels).logits, torch.as_tensor(batch["labels"]), weight=WEIGHTS)
    assert torch.equal(_parameters(model), initial)

    assert big_loss == pytest.approx(by_hand.item(), rel=1e-5)
    assert accumulated_loss == pytest.approx(big_loss, rel=1e-5)
    assert not torch.allclose(_parameters(big.model), initial)
    assert torch.allclose(_parameters(accumulated.model), _parameters(big.model), atol=1e-6)
