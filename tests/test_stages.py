"""The schedule of stages, the choice of the best stage, one epoch axis for the curves."""

import pytest

from flowers_hf.training.arguments import FlowersTrainingArguments
from flowers_hf.training.stages import Stage, StageResult, best_stage, merged_history, plan_stages


def _args(tmp_path, **kwargs) -> FlowersTrainingArguments:
    return FlowersTrainingArguments(output_dir=str(tmp_path), report_to=[], **kwargs)


def test_linear_probe_is_one_stage_on_the_head(tmp_path):
    (stage,) = plan_stages(_args(tmp_path, freeze_backbone=True, num_train_epochs=20), num_groups=6)
    assert (stage.trainable_groups, stage.epochs, stage.learning_rate) == (1, 20, 1e-3)


def test_two_stages_unfreeze_the_last_groups_at_their_own_rate(tmp_path):
    args = _args(tmp_path, freeze_backbone=True, num_train_epochs=8, stage2_epochs=5, stage2_unfreeze=2)
    first, second = plan_stages(args, num_groups=9)
    assert first.trainable_groups == 1
    assert (second.trainable_groups, second.epochs, second.learning_rate) == (3, 5, 1e-4)
    assert second.description == "last 2 groups and the head"


@pytest.mark.parametrize("unfreeze", [-1, 8, 50])
def test_unfreezing_every_group_is_the_full_model(tmp_path, unfreeze):
    args = _args(tmp_path, freeze_backbone=True, stage2_epochs=1, stage2_unfreeze=unfreeze)
    assert plan_stages(args, num_groups=9)[1].trainable_groups is None


def _result(number: int, best: float | None, history: list[dict]) -> StageResult:
    stage = Stage(number, f"stage {number}", None, 2, 1e-3)
    return StageResult(stage, f"checkpoint-{number}", best, 2.0, history)


def test_best_stage_by_metric_with_ties_going_to_the_later_stage():
    first, second = _result(1, 0.8, []), _result(2, 0.7, [])
    assert best_stage([first, second], greater_is_better=True) is first
    assert best_stage([first, second], greater_is_better=False) is second
    tie = _result(2, 0.8, [])
    assert best_stage([first, tie], greater_is_better=True) is tie
    assert best_stage([_result(1, None, []), _result(2, None, [])], True).stage.number == 2


def test_histories_share_one_epoch_axis():
    first = _result(1, 0.5, [{"epoch": 1.0, "loss": 2.0}, {"epoch": 2.0, "eval_accuracy": 0.5}])
    second = _result(2, 0.6, [{"epoch": 1.0, "loss": 1.0}, {"step": 3}])
    history = merged_history([first, second])
    assert [(r["epoch"], r["stage"]) for r in history] == [(1.0, 1), (2.0, 1), (3.0, 2)]
