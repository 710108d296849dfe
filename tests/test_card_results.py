"""Later evaluations in the model card's model-index: the scores of ``python -m flowers_hf.evaluate`` added to a run
folder's card, read back through huggingface_hub."""

import pytest
from huggingface_hub import ModelCard

from flowers_hf.core.errors import ArgumentError, HubPushError
from flowers_hf.data.identity import identify
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.evaluate import publish_results
from flowers_hf.evaluation.arguments import EvaluationArguments
from flowers_hf.reporting.model_card import RunSummary, evaluation_results, update_model_card, write_model_card
from flowers_hf.reporting.publish import push_results

SUITE = {"corruptions": ["brightness", "zoom"], "severities": [1, 5]}
MEASURED_WITH = {
    "tta_accuracy": {"views": "flip"},
    "mean_corruption_accuracy": SUITE,
    "relative_mean_corruption_accuracy": SUITE,
}
LATER = {
    "test_accuracy": 0.5,
    "test_top5_accuracy": 0.9,
    "test_tta_accuracy": 0.55,
    "test_mean_corruption_accuracy": 0.3,
    "test_relative_mean_corruption_accuracy": 0.6,
    "test_ms_per_image": 3.2,  # not a score: never in the model-index
}


@pytest.fixture
def card_path(tmp_path):
    summary = RunSummary(
        architecture="test_resnet",
        base_weights=None,
        dataset=identify("synthetic"),
        split_sizes={"train": 6, "validation": 6, "test": 12},
        class_names=["pink primrose", "canterbury bells"],
        preprocessing=resolve_preprocessing("test_resnet"),
        stages=[],
        training={},
        validation_metrics={},
        test_metrics={"test_accuracy": 0.5, "test_top5_accuracy": 0.9, "test_macro_f1": 0.45},
    )
    return write_model_card(summary, tmp_path / "run")


def _entries(path) -> dict[tuple, float]:
    card = ModelCard.load(path)
    return {(r.metric_name, r.dataset_split, str(r.metric_args)): r.metric_value for r in card.data.eval_results}


def test_evaluation_results_name_each_score_of_the_split():
    results = evaluation_results(LATER, "test", "test", identify("synthetic"), MEASURED_WITH)
    assert {r.metric_name: r.metric_value for r in results} == {
        "Accuracy": 0.5,
        "Top-5 accuracy": 0.9,
        "Accuracy with test-time augmentation": 0.55,
        "Mean accuracy under corruption": 0.3,
        "Corrupted accuracy / clean accuracy": 0.6,
    }
    assert {r.dataset_split for r in results} == {"test"} and {r.dataset_type for r in results} == {"synthetic"}
    tta = next(r for r in results if r.metric_name.startswith("Accuracy with"))
    assert (tta.metric_type, tta.metric_args) == ("accuracy", {"views": "flip"})


def test_later_scores_are_added_to_the_run_folders_card(card_path):
    before = _entries(card_path)
    update_model_card(card_path, evaluation_results(LATER, "test", "test", identify("synthetic"), MEASURED_WITH))
    after = _entries(card_path)
    assert {key: after[key] for key in before} == before  # the training's test scores stay, same values
    added = {key[0]: value for key, value in after.items() if key not in before}
    assert added == {
        "Accuracy with test-time augmentation": 0.55,
        "Mean accuracy under corruption": 0.3,
        "Corrupted accuracy / clean accuracy": 0.6,
    }
    card = ModelCard.load(card_path)
    assert {"accuracy", "mean_corruption_accuracy"} <= set(card.data.metrics)
    assert "## Results" in card.text  # the body is kept


def test_the_same_measurement_again_replaces_its_value_and_another_one_is_added(card_path):
    dataset = identify("synthetic")
    update_model_card(card_path, evaluation_results(LATER, "test", "test", dataset, MEASURED_WITH))
    count = len(_entries(card_path))
    again = {**LATER, "test_mean_corruption_accuracy": 0.35}
    update_model_card(card_path, evaluation_results(again, "test", "test", dataset, MEASURED_WITH))
    entries = _entries(card_path)
    assert len(entries) == count
    assert entries[("Mean accuracy under corruption", "test", str(SUITE))] == 0.35
    # Another suite (other corruptions) or another split is another measurement: kept beside the first.
    other = {**MEASURED_WITH, "mean_corruption_accuracy": {"corruptions": ["fog"], "severities": [3]}}
    update_model_card(card_path, evaluation_results(again, "test", "test", dataset, other))
    update_model_card(card_path, evaluation_results({"eval_accuracy": 0.7}, "eval", "validation", dataset))
    entries = _entries(card_path)
    assert len(entries) == count + 2
    assert entries[("Accuracy", "validation", "None")] == 0.7


def test_evaluate_records_the_whole_split_in_the_card_and_leaves_a_subset_out(card_path, tmp_path):
    dataset = identify("synthetic")  # as load_data returns it with the splits
    subset = EvaluationArguments(model=str(card_path.parent), max_eval_samples=10)
    before = card_path.read_text()
    publish_results(LATER, subset, dataset, tmp_path)
    assert card_path.read_text() == before
    whole = EvaluationArguments(model=str(card_path.parent), tta_views="flip")
    publish_results(LATER, whole, dataset, tmp_path)
    assert ("Accuracy with test-time augmentation", "test", "{'views': 'flip'}") in _entries(card_path)
    no_card = EvaluationArguments(model=str(card_path.parent), update_card=False)
    publish_results(LATER, no_card, dataset, tmp_path)
    assert len(_entries(card_path)) == 6  # 3 of training, 3 added once


def test_pushing_results_needs_the_whole_split_and_a_repository_id(card_path):
    for wrong in ({"push_results": "not-a-repo"}, {"push_results": "alice/model", "max_eval_samples": 5}):
        with pytest.raises(ArgumentError, match="--push_results"):
            EvaluationArguments(model=str(card_path.parent), **wrong)


def test_a_push_that_cannot_read_the_repositorys_card_says_so(tmp_path):
    # Offline here (HF_HUB_OFFLINE=1): the card cannot be fetched, and nothing is half-done.
    with pytest.raises(HubPushError, match=r"Cannot read the model card of alice/model.*--push_results alice/model"):
        push_results(tmp_path, "alice/model", [], "eval_test")
