"""The search space: a small YAML file of ``train.py`` arguments and their ranges, checked before any trial runs.

learning_rate: {low: 1.0e-4, high: 1.0e-1, log: true}   # a float, log-uniform
num_train_epochs: {low: 2, high: 8, step: 1}             # a budget, in whole epochs
stage2_unfreeze: {choices: [1, 2, 3, -1]}                # one of a list
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from flowers_hf.core.errors import ArgumentError, MissingFileError

# Arguments that say where or how a run is kept, not how it learns: never searched.
_NOT_HYPERPARAMETERS = {"output_dir", "dataset", "config", "push_to_hub", "hub_model_id", "hub_token", "seed"}


@dataclass(frozen=True)
class Parameter:
    """One searched argument: a range (``low``/``high``, optionally ``log`` or ``step``) or a list of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def load_space(path: str | Path, dataclass_types: Sequence[type]) -> list[Parameter]:
    """Read and check a search space: every key a ``train.py`` argument, every range well-formed.

    Args:
        path: the YAML file.
        dataclass_types: ``train.py``'s argument dataclasses, whose fields (and defaults' types) the keys must match.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"--search {path}: no such file (configs/search/default.yaml is the default space)")
    space = yaml.safe_load(path.read_text())
    if not isinstance(space, dict) or not space:
        raise ArgumentError(f"--search {path}: expected 'argument: {{low: …, high: …}}' entries, got {space!r}")
    defaults = _defaults(dataclass_types)
    return [_parameter(name, spec, defaults, path) for name, spec in space.items()]


def _defaults(dataclass_types: Sequence[type]) -> dict[str, Any]:
    fields = {}
    for cls in dataclass_types:
        for f in dataclasses.fields(cls):
            fields[f.name] = f.default if f.default is not dataclasses.MISSING else None
    return fields


def _parameter(name: str, spec: Any, defaults: dict[str, Any], path: Path) -> Parameter:
    where = f"--search {path}: {name}"
    if name not in defaults:
        close = difflib.get_close_matches(name, defaults, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ArgumentError(f"{where} is not a train.py argument{hint}")
    if name in _NOT_HYPERPARAMETERS:
        raise ArgumentError(f"{where} says where or how a run is kept; it is not searched")
    if not isinstance(spec, dict):
        raise ArgumentError(f"{where}: expected {{low: …, high: …}} or {{choices: […]}}, got {spec!r}")
    if "choices" in spec:
        return _choices(name, spec, where)
    unknown = sorted(set(spec) - {"low", "high", "log", "step"})
    if unknown or not {"low", "high"} <= set(spec):
        raise ArgumentError(f"{where}: a range takes low, high and optionally log or step, got {sorted(spec)}")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise ArgumentError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if not low < high:
        raise ArgumentError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ArgumentError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise ArgumentError(f"{where}: a range is either log or stepped, not both")
    if step is not None and not (isinstance(step, int | float) and 0 < step <= high - low):
        raise ArgumentError(f"{where}: step must be a number in (0, high - low], got {step!r}")
    default = defaults[name]
    integer = isinstance(default, int) and not isinstance(default, bool)
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise ArgumentError(f"{where} is a whole number: low and high must be too, got {low} and {high}")
    if not (integer or isinstance(default, float) or default is None):
        raise ArgumentError(f"{where} takes a {type(default).__name__}: give it as {{choices: […]}}")
    return Parameter(name, float(low), float(high), log, None if step is None else float(step), integer=integer)


def _choices(name: str, spec: dict[str, Any], where: str) -> Parameter:
    choices = spec["choices"]
    if set(spec) != {"choices"}:
        raise ArgumentError(f"{where}: choices stand alone, got {sorted(spec)}")
    if not isinstance(choices, list) or not choices:
        raise ArgumentError(f"{where}: choices must be a non-empty list, got {choices!r}")
    if not all(isinstance(c, bool | int | float | str) for c in choices):
        raise ArgumentError(f"{where}: choices must be numbers, strings or booleans, got {choices!r}")
    return Parameter(name, choices=tuple(choices))


def as_flags(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as ``train.py`` flags."""
    return [item for name, value in params.items() for item in (f"--{name}", _flag_value(value))]


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)
