"""Is an image one of the known classes, or none of them? Three scores of the logits, and the rule that
``python -m flowers_hf.evaluate --ood`` (or ``train.py --holdout_classes``) recommends, stored in ``config.json``.

Every score is oriented the same way: higher means more like a known class, so one rule reads them all ("unknown
below the threshold"). MSP is the maximum softmax probability (Hendrycks & Gimpel, 2017), the rule the calibration's
unsure threshold applies; the maximum logit (Hendrycks et al., 2022) and the energy score (Liu et al., 2020) read
the logits before softmax normalises their scale away. The energy is ``E(x) = -logsumexp(logits)``, low for known
images, so its score is ``-E(x)``. All are computed on the logits the saved model outputs (temperature-scaled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax
from transformers import PretrainedConfig

CONFIG_KEY = "ood"


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability of each row of ``logits``, shape (n, classes) -> (n,)."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1).max(axis=-1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """The largest logit of each row."""
    return np.asarray(logits, dtype=np.float64).max(axis=-1)


def energy(logits: np.ndarray) -> np.ndarray:
    """The free energy ``-logsumexp(logits)`` of each row: low for images like the training data."""
    return -logsumexp(np.asarray(logits, dtype=np.float64), axis=-1)


# Each score, higher meaning "more like a known class"; the first is today's rule.
SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "msp": msp,
    "max_logit": max_logit,
    "energy": lambda logits: -energy(logits),
}
SCORE_NAMES = {"msp": "maximum softmax probability", "max_logit": "maximum logit", "energy": "negative energy"}


def known_score(logits: np.ndarray, score: str) -> np.ndarray:
    """The score ``score`` (a key of :data:`SCORES`) of each row of ``logits``; higher: more like a known class."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {list(SCORES)}")
    return SCORES[score](logits)


@dataclass(frozen=True)
class OpenSetRule:
    """The rule "none of these classes below ``threshold`` of ``score``", as ``config.json`` stores it (``ood``).

    Args:
        score: a key of :data:`SCORES`.
        threshold: the score below which an image is taken for none of the classes; chosen on validation to keep
            95 % of the correctly classified images.
        fpr_at_95_tpr: the share of the out-of-distribution set accepted where 95 % of the in-distribution test
            images are (measured when the rule was chosen); ``None`` where not measured.
        ood_source: the out-of-distribution images it was measured on.
        ood_accepted: the share of those images that ``threshold`` accepts.
    """

    score: str
    threshold: float
    fpr_at_95_tpr: float | None = None
    ood_source: str | None = None
    ood_accepted: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> OpenSetRule | None:
        """The rule recorded in a model config (``config.ood``), or ``None``."""
        stored = getattr(config, CONFIG_KEY, None)
        if not stored or stored.get("score") not in SCORES:
            return None
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})
