"""Training arguments: precision choice on this machine, option checks, defaults that the transform needs."""

import logging

import pytest

from flowers_hf.training import arguments as training_arguments
from flowers_hf.training.arguments import FlowersTrainingArguments, _mixed_precision, default_workers, gpu_defaults


def _args(tmp_path, **kwargs) -> FlowersTrainingArguments:
    return FlowersTrainingArguments(output_dir=str(tmp_path), report_to=[], **kwargs)


def test_auto_precision_on_cpu_is_fp32(tmp_path):
    args = _args(tmp_path, precision="auto")
    assert (args.fp16, args.bf16) == (False, False)


def test_fp16_on_cpu_falls_back_to_fp32_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="flowers_hf"):
        args = _args(tmp_path, precision="fp16")
    assert (args.fp16, args.bf16) == (False, False)
    assert "needs a CUDA GPU" in caplog.text


def test_bf16_is_honoured_on_cpu(tmp_path):
    args = _args(tmp_path, precision="bf16")
    assert (args.fp16, args.bf16) == (False, True)
    assert args.use_cpu  # the Trainer's CPU autocast needs it


def test_preset_records_machine_dependent_flags_as_given(tmp_path):
    args = _args(tmp_path, precision="fp16", hub_token="secret")
    assert (args.fp16, args.use_cpu) == (False, True)  # this machine has no GPU
    preset = args.to_preset()
    assert (preset["fp16"], preset["use_cpu"], preset["precision"]) == (False, False, "fp16")
    assert "hub_token" not in preset and "secret" not in str(preset)


@pytest.mark.parametrize(
    ("precision", "cuda", "bf16_supported", "expected"),
    [("auto", True, True, (False, True)), ("auto", True, False, (True, False)), ("fp16", True, True, (True, False))],
)
def test_precision_on_gpus(monkeypatch, precision, cuda, bf16_supported, expected):
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda *a, **k: bf16_supported)
    assert _mixed_precision(precision, fp16=False, bf16=False, use_cpu=False) == expected
    assert _mixed_precision(precision, fp16=False, bf16=False, use_cpu=True) == (False, precision == "bf16")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, "--precision"),
        ({"class_weights": "inverse"}, "--class_weights"),
        ({"stage2_unfreeze": 0}, "--stage2_unfreeze"),
        ({"backbone_learning_rate_scale": 0.0}, "--backbone_learning_rate_scale"),
        ({"remove_unused_columns": True}, "image column"),
        ({"push_to_hub": True}, "--hub_model_id OWNER/NAME"),
        ({"push_to_hub": True, "hub_model_id": "no-owner"}, "--hub_model_id OWNER/NAME"),
        ({"load_best_model_at_end": False}, "--early_stopping_patience 0"),
    ],
)
def test_bad_options_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **kwargs)


def test_defaults_select_the_best_epoch_by_validation_accuracy(tmp_path):
    args = _args(tmp_path)
    assert args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert args.load_best_model_at_end and args.remove_unused_columns is False
    assert args.save_total_limit == 2  # the best and the last checkpoint


def test_workers_start_fresh_each_epoch_unless_asked_and_none_means_none_to_keep(tmp_path):
    def persistent(workers: int, **asked) -> bool:
        return _args(tmp_path, dataloader_num_workers=workers, **asked).dataloader_persistent_workers

    assert persistent(2) is False  # the default: fresh workers each epoch, for exact resume
    assert persistent(2, dataloader_persistent_workers=True) is True
    assert persistent(0, dataloader_persistent_workers=True) is False


@pytest.mark.parametrize(
    ("given", "pin_memory", "tf32_available", "expected"),
    [
        ((None, None), True, True, (True, {"non_blocking": True})),  # an H100: TF32 on, copies overlap the step
        ((None, None), True, False, (None, {"non_blocking": True})),  # a pre-Ampere GPU: no TF32 to turn on
        ((False, None), False, True, (False, None)),  # asked off; nothing pinned, nothing to copy ahead
        ((None, {"split_batches": True}), True, True, (True, {"split_batches": True})),  # a given config stays
    ],
)
def test_gpu_defaults_turn_on_tf32_and_non_blocking_copies_unless_told_otherwise(
    given, pin_memory, tf32_available, expected
):
    assert gpu_defaults(*given, pin_memory, tf32_available) == expected


def test_on_this_cpu_tf32_and_the_accelerator_config_stay_as_given(tmp_path):
    args = FlowersTrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert args.tf32 is None and args.accelerator_config.non_blocking is False
    assert args.to_preset()["tf32"] is None and args.to_preset()["accelerator_config"] is None


@pytest.mark.parametrize(("cores", "local_processes", "expected"), [(2, 1, 2), (16, 1, 12), (16, 2, 8), (2, 4, 1)])
def test_workers_share_the_cores_among_the_processes_of_the_machine(monkeypatch, cores, local_processes, expected):
    monkeypatch.setattr(training_arguments.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_processes))
    assert default_workers() == expected
