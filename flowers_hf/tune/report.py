"""What a search leaves: ``best.yaml`` (the best trial's configuration, a ``train.py`` preset), ``search_report.md``
with a table of the trials, Optuna's plots, and, once the best configuration has been trained, its test score."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from flowers_hf.reporting.run_folder import CONFIG_FILE
from flowers_hf.tune.study import COUNTED, trial_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt

logger = logging.getLogger(__name__)

REPORT_FILE = "search_report.md"
BEST_PRESET = "best.yaml"
BEST_RUN = "best"
PLOTS = {
    "optimization_history.png": optuna.visualization.matplotlib.plot_optimization_history,
    "param_importances.png": optuna.visualization.matplotlib.plot_param_importances,
    "parallel_coordinate.png": optuna.visualization.matplotlib.plot_parallel_coordinate,
}


def write_best_preset(study: optuna.Study, output_dir: Path) -> Path:
    """``best.yaml``: the best trial's whole configuration as ``train.py --config`` reads it, its output folder
    ``OUTPUT_DIR/best``."""
    best = study.best_trial
    config = yaml.safe_load((trial_dir(output_dir, best.number) / CONFIG_FILE).read_text())
    config["output_dir"] = str(Path(output_dir) / BEST_RUN)
    header = f"# The best of {len(_counted(study))} trials of study '{study.study_name}': trial {best.number}, "
    header += f"validation {best.value:.4f}. Train it: python train.py --config {Path(output_dir) / BEST_PRESET}\n"
    path = Path(output_dir) / BEST_PRESET
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def write_plots(study: optuna.Study, output_dir: Path) -> list[str]:
    """Optuna's matplotlib plots of the study; those its trials do not allow yet (importances need two finished
    trials with varied parameters) are left out with a log line."""
    written = []
    for name, plot in PLOTS.items():
        try:
            ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            logger.info("No %s yet: %s", name, error)
            continue
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        figure.savefig(output_dir / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def write_report(study: optuna.Study, output_dir: Path, plots: list[str]) -> Path:
    """``search_report.md``: the study, its best trial and command, the test score of the best configuration's run
    (if it has run), the plots and a table of every trial."""
    output_dir = Path(output_dir)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    lines = [f"# Hyperparameter search: study '{study.study_name}'", ""]
    lines += [f"Trials: {', '.join(f'{n} {state}' for state, n in counts.items() if n)}. Scored on validation only."]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        lines += ["", f"## Best: trial {best.number}, validation {best.value:.4f}", ""]
        lines += [f"- `{name}`: {_value(value)}" for name, value in best.params.items()]
        lines += ["", f"Its configuration is `{BEST_PRESET}`: `python train.py --config {output_dir / BEST_PRESET}`"]
        lines += _test_lines(output_dir, best)
    lines += ["", *(f"![{name}]({name})" for name in plots)]
    lines += ["", "## Trials", "", _table(trials)]
    path = output_dir / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def _test_lines(output_dir: Path, best: FrozenTrial) -> list[str]:
    results = output_dir / BEST_RUN / "test_results.json"
    if not results.is_file():
        return ["", "The test split has not been read: the best configuration has not been trained yet."]
    test = json.loads(results.read_text())
    validation = json.loads((output_dir / BEST_RUN / "eval_results.json").read_text())["eval_accuracy"]
    return [
        "",
        f"**Test accuracy {test['test_accuracy']:.2%}** (top-5 {test.get('test_top5_accuracy', float('nan')):.2%}): "
        f"the best configuration trained by `{BEST_PRESET}` into `{output_dir / BEST_RUN}`, the one read of the "
        f"test split in this search. Its validation accuracy there: {validation:.4f} (the trial's: {best.value:.4f}; "
        "the same seed and code path, so equal unless the hardware or thread count differs).",
    ]


def _table(trials: list[FrozenTrial]) -> str:
    names = sorted({name for t in trials for name in t.params})
    header = ["trial", "state", *names, "validation", "evaluations", "wall time (s)"]
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for t in trials:
        value = "" if t.value is None else f"{t.value:.4f}"
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = f"{t.intermediate_values[max(t.intermediate_values)]:.4f} (last)"
        cells = [str(t.number), t.state.name.lower(), *(_value(t.params.get(n, "")) for n in names), value]
        cells += [str(len(t.intermediate_values)), str(t.user_attrs.get("wall_time_s", ""))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _counted(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state in COUNTED]


def add_card_section(study: optuna.Study, output_dir: Path) -> None:
    """A section in the best run's model card: how its configuration was chosen."""
    card = Path(output_dir) / BEST_RUN / "README.md"
    if not card.is_file() or "## How the configuration was chosen" in card.read_text():
        return
    best = study.best_trial
    params = ", ".join(f"`{name}` {_value(value)}" for name, value in best.params.items())
    section = (
        "\n\n## How the configuration was chosen\n\n"
        f"A hyperparameter search (`python -m flowers_hf.tune search`, Optuna TPE) of {len(_counted(study))} "
        f"trials scored on the validation split; the best, trial {best.number} (validation {best.value:.4f}), "
        f"set {params}. This model was trained with that configuration, and its test score above is the only time "
        "the search read the test split.\n"
    )
    card.write_text(card.read_text().rstrip("\n") + section)
