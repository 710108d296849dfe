"""python -m flowers_hf.tune: the range test's suggestions and weights, the search space's checks, pruning, the
test split kept out of a search, and a study that survives SIGKILL and is shared by two workers."""

import os
import signal
import subprocess
import sys
import time
from typing import ClassVar

import numpy as np
import optuna
import pytest
import torch
import yaml
from helpers import ROOT
from optuna.trial import TrialState

import flowers_hf.train
import flowers_hf.tune.__main__ as tune_main
from flowers_hf.core.cli import parse_args
from flowers_hf.core.errors import ArgumentError
from flowers_hf.data.load import LoadedData
from flowers_hf.train import ARGUMENTS, prepare
from flowers_hf.tune.arguments import LrFindArguments
from flowers_hf.tune.lr_find import run_range_test, suggestions
from flowers_hf.tune.space import load_space
from flowers_hf.tune.study import PruningCallback

# 4 classes × 16 images of 32 px, timm's test_resnet: a trial takes seconds.
TINY = ["--dataset", "synthetic", "--synthetic_num_classes", "4", "--synthetic_images_per_class", "16",
        "--synthetic_image_size", "32", "--model", "test_resnet", "--pretrained", "false", "--image_size", "32",
        "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0", "--report_to", "none",
        "--early_stopping_patience", "0", "--disable_tqdm", "true"]  # fmt: skip
TWO_STAGES = ["--freeze_backbone", "true", "--num_train_epochs", "1", "--stage2_epochs", "1"]
SPACE = {
    "learning_rate": {"low": 1e-3, "high": 5e-2, "log": True},
    "num_train_epochs": {"low": 1, "high": 2, "step": 1},
}


def test_suggestions_lie_where_a_known_loss_falls_fastest():
    rates = np.geomspace(1e-6, 10, 300)
    x = np.log10(rates)
    loss = 2 - np.tanh(2 * (x + 3))  # falls fastest at lr = 1e-3, flat below and above
    loss = loss + np.where(rates > 0.1, 40 * (rates - 0.1), 0)  # diverges past 0.1, faster than anywhere it falls
    steepest, valley = suggestions(rates, loss)
    assert 1e-3 / 1.1 < steepest < 1e-3 * 1.1
    assert 1e-4 < valley < 1e-2  # inside the stretch where the loss keeps falling


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("stage", [1, 2])
def test_range_test_leaves_the_weights_and_frozen_layers_as_they_were(tmp_path, stage):
    arguments = parse_args(ARGUMENTS, [*TINY, *TWO_STAGES, "--output_dir", str(tmp_path)])
    run = prepare(arguments, splits=("train", "validation"))
    before = _state(run.model)
    trainable = {name: p.requires_grad for name, p in run.model.named_parameters()}
    result = run_range_test(run, arguments[-1], LrFindArguments(stage=stage, num_steps=12, lr_min=1e-5, lr_max=100))
    assert 5 <= len(result.losses) <= 12 and len(result.learning_rates) == len(result.losses)
    assert np.all(np.diff(result.learning_rates) > 0) and result.learning_rates[0] == pytest.approx(1e-5)
    after = run.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert trainable == {name: p.requires_grad for name, p in run.model.named_parameters()}
    assert not list(tmp_path.glob("**/checkpoint-*"))  # the test keeps no checkpoint


def test_range_test_records_every_step_when_an_epoch_has_several(tmp_path):
    # 8 training images in batches of 2: four steps an epoch, where the runs log once an epoch (the presets' default).
    arguments = parse_args(ARGUMENTS, [*TINY, "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path)])
    run = prepare(arguments, splits=("train", "validation"))
    result = run_range_test(run, arguments[-1], LrFindArguments(num_steps=12, lr_min=1e-6, lr_max=1e-4))
    assert arguments[-1].logging_strategy == "epoch"
    assert result.learning_rates == pytest.approx(np.geomspace(1e-6, 1e-4, 12).tolist())


@pytest.mark.slow
def test_lr_find_command_writes_the_curve_the_plot_and_the_flag(tmp_path, capsys):
    found = tune_main.main(["lr_find", "--num_steps", "10", *TINY, "--output_dir", str(tmp_path)])
    record = yaml.safe_load((tmp_path / "lr_find.json").read_text())
    assert record["valley"] == found["valley"] and record["flag"] == f"--learning_rate {found['steepest']:.2e}"
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    assert record["flag"] in capsys.readouterr().out


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rte": {"low": 1e-4, "high": 1e-2}}, "did you mean learning_rate"),
        ({"learning_rate": {"low": 1e-2, "high": 1e-4}}, "must be below high"),
        ({"learning_rate": {"low": 0, "high": 1e-2, "log": True}}, "log range needs low > 0"),
        ({"learning_rate": {"low": 1e-4, "hi": 1e-2}}, "a range takes low, high"),
        ({"stage2_unfreeze": {"low": 0.5, "high": 3}}, "whole number"),
        ({"lr_scheduler_type": {"low": 0, "high": 1}}, "choices"),
        ({"stage2_unfreeze": {"choices": []}}, "non-empty list"),
        ({"output_dir": {"choices": ["a", "b"]}}, "not searched"),
        ([1, 2], "expected"),
    ],
)
def test_bad_search_files_are_refused_before_any_trial(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(ArgumentError, match=message):
        tune_main.main(["search", "--search", str(path), "--output_dir", str(tmp_path / "study"), *TINY])
    assert not (tmp_path / "study").exists()  # no storage, no trial


def test_a_search_space_reads_back_as_optuna_distributions(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, "stage2_unfreeze": {"choices": [1, -1]}}))
    space = {p.name: p for p in load_space(path, ARGUMENTS)}
    trial = optuna.create_study().ask()
    values = {name: p.suggest(trial) for name, p in space.items()}
    assert 1e-3 <= values["learning_rate"] <= 5e-2 and values["num_train_epochs"] in (1.0, 2.0)
    assert values["stage2_unfreeze"] in (1, -1) and isinstance(
        trial.distributions["learning_rate"], optuna.distributions.FloatDistribution
    )
    assert trial.distributions["learning_rate"].log


def test_pruning_callback_reports_each_evaluation_and_prunes_a_weak_trial():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))

    def objective(trial):
        callback = PruningCallback(trial, "accuracy")
        for accuracy in (0.6, 0.7, 0.4, 0.9):
            callback.on_evaluate(None, None, None, metrics={"eval_accuracy": accuracy, "eval_loss": 1.0})
        return 0.9

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {0: 0.6, 1: 0.7, 2: 0.4}  # the partial history is kept


class _CountingSplits(dict):
    """The loaded splits, counting every time the test split is handed out."""

    reads: ClassVar[dict[str, int]] = {"search": 0, "final": 0}
    phase: ClassVar[str] = "search"

    def __getitem__(self, name):
        if name == "test":
            self.reads[self.phase] += 1
        return super().__getitem__(name)

    def items(self):
        return [(name, self[name]) for name in self]

    def values(self):
        return [self[name] for name in self]


@pytest.mark.slow
def test_a_search_never_reads_the_test_split_and_its_best_run_reads_it_once(tmp_path, monkeypatch):
    load_data = flowers_hf.train.load_data

    def counting_load_data(**kwargs):
        loaded = load_data(**kwargs)
        return LoadedData(_CountingSplits(loaded.splits), loaded.identity)

    def final_run(argv):
        _CountingSplits.phase = "final"
        return train_main(argv)

    train_main = tune_main.train_main
    monkeypatch.setattr(flowers_hf.train, "load_data", counting_load_data)
    monkeypatch.setattr(tune_main, "train_main", final_run)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "study"
    found = tune_main.main(["search", "--search", str(space), "--n_trials", "3", "--output_dir", str(out), *TINY])

    assert _CountingSplits.reads["search"] == 0 and _CountingSplits.reads["final"] >= 1
    study = optuna.load_study(study_name="flowers_hf", storage=f"sqlite:///{out / 'study.db'}")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3 and found["trials_run_here"] == 3
    assert not list(out.glob("trials/**/checkpoint-*"))  # trials keep no checkpoints
    # best.yaml is a preset train.py takes, with the best trial's values; its run's test score is in the report.
    *_, best_args = parse_args(ARGUMENTS, ["--config", str(out / "best.yaml")])
    assert best_args.learning_rate == pytest.approx(study.best_params["learning_rate"])
    assert best_args.output_dir == str(out / "best")
    test_accuracy = yaml.safe_load((out / "best" / "test_results.json").read_text())["test_accuracy"]
    report = (out / "search_report.md").read_text()
    assert f"**Test accuracy {test_accuracy:.2%}**" in report and "| 2 | complete |" in report
    assert "## How the configuration was chosen" in (out / "best" / "README.md").read_text()
    assert (out / "optimization_history.png").is_file()


def _worker(out, n_trials, *extra):
    command = [sys.executable, "-m", "flowers_hf.tune", "search", "--search", str(out.parent / "space.yaml"),
               "--n_trials", str(n_trials), "--output_dir", str(out), "--heartbeat_interval", "1",
               "--grace_period", "3", "--final_run", "false", *extra, *TINY]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _trials(out):
    """The study's trials; none while the worker has created the database file but not yet the study in it."""
    if not (out / "study.db").is_file():
        return []
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    try:
        return optuna.load_study(study_name="flowers_hf", storage=storage).get_trials()
    except KeyError:  # optuna 5.0: "Record does not exist." until create_study has written the study
        return []


@pytest.mark.slow
def test_a_sigkilled_worker_is_resumed_by_the_same_command_with_the_exact_trial_count(tmp_path):
    # The epochs are not searched here, so that --num_train_epochs 30 holds: long trials, the kill lands inside trial 1
    # (with the epochs searched, trials of 1-2 epochs could all end between two polls).
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"learning_rate": SPACE["learning_rate"]}))
    out = tmp_path / "study"
    worker = _worker(out, 3, "--num_train_epochs", "30")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None:
        if any(t.number == 1 and t.state == TrialState.RUNNING for t in _trials(out)):
            break
        time.sleep(0.5)
    assert worker.poll() is None, worker.stderr.read()
    first = {t.number: t.value for t in _trials(out) if t.state == TrialState.COMPLETE}
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(4)  # past the grace period: the killed trial's heartbeat is stale

    rerun = _worker(out, 3)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    trials = _trials(out)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert trials[1].state == TrialState.FAIL  # killed: failed, not counted
    assert {n: trials[n].value for n in first} == first  # nothing of the finished trial is lost


@pytest.mark.slow
def test_two_workers_share_one_study_without_running_a_trial_twice(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "study"
    out.mkdir()
    optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name="flowers_hf", direction="maximize")
    workers = [_worker(out, 4), _worker(out, 4)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()
    counted = [t for t in _trials(out) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4
    assert len({t.user_attrs["worker"] for t in counted}) == 2  # both ran trials
    assert len({tuple(sorted(t.params.items())) for t in counted}) == 4  # each configuration once
    assert len({t.user_attrs["train_flags"][-3] for t in counted}) == 4  # each in its own folder


def test_the_benchmark_replays_finished_curves_through_a_pruner():
    from bench.tune import replay

    curves = [[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.0, 0.0, 0.0], [0.9, 0.9, 0.95]]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    # The third trial is below the first two's median (0.3) at its first evaluation: stopped there.
    assert replay(curves, pruner) == (3 + 3 + 1 + 3, 0.95)
    assert replay(curves, optuna.pruners.NopPruner()) == (12, 0.95)


def test_searching_the_schedule_length_with_a_pruner_is_warned_about(caplog):
    from flowers_hf.tune.space import Parameter

    epochs, rate = Parameter("num_train_epochs", 2, 8, step=1, integer=True), Parameter("learning_rate", 1e-4, 1e-2)
    assert tune_main.warn_if_the_pruner_compares_schedules([rate, epochs], "median")
    assert "num_train_epochs is searched and --pruner median" in caplog.text
    assert not tune_main.warn_if_the_pruner_compares_schedules([rate, epochs], "none")
    assert not tune_main.warn_if_the_pruner_compares_schedules([rate], "halving")
