"""Sections added to a run's model card, each between markers so that a later run replaces it: running the ONNX
export (``python -m flowers_hf.export``), the open-set figures (``ood.json``), the images an audit excluded and the
teacher a model was distilled from."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from flowers_hf.data.exclude import EXCLUDED_FILE
from flowers_hf.reporting.model_card import LOCAL_PLACEHOLDER, percent
from flowers_hf.serving.open_set import SCORE_NAMES

logger = logging.getLogger(__name__)


# The card's section on the ONNX export, between markers so that another export replaces it.
ONNX_TEMPLATE_PATH = Path(__file__).with_name("model_card_onnx.md")
ONNX_MARKERS = ("<!-- flowers_hf export: onnx -->", "<!-- /flowers_hf export: onnx -->")


def add_onnx_usage(card_path: Path, record: dict[str, Any]) -> None:
    """Put the section on running the exported files (``python -m flowers_hf.export``) into a run's model card:
    in place of an earlier one, else before Limitations, else at the end.

    Args:
        card_path: the run's ``README.md``.
        record: the export's ``export.json``.
    """
    put_section(card_path, ONNX_MARKERS, _onnx_section(record))
    logger.info("Added the ONNX section to %s", card_path)


def put_section(card_path: Path, markers: tuple[str, str], body: str) -> None:
    """Put ``body`` between ``markers`` into a model card: in place of an earlier one, else before Limitations, else
    at the end.

    Args:
        card_path: the card file.
        markers: the HTML comments that open and close the section.
        body: the section's Markdown.
    """
    section = "\n".join((markers[0], body.strip(), markers[1]))
    text = card_path.read_text(encoding="utf-8")
    start, end = (text.find(marker) for marker in markers)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(markers[1]) :]
    elif "\n## Limitations" in text:
        text = text.replace("\n## Limitations", f"\n{section}\n\n## Limitations", 1)
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    card_path.write_text(text, encoding="utf-8")


def _onnx_section(record: dict[str, Any]) -> str:
    files = list(record["files"])
    _, _, height, width = record["how"]["input"]["shape"]
    int8 = "model_int8.onnx" in files
    return jinja2.Template(ONNX_TEMPLATE_PATH.read_text(encoding="utf-8")).render(
        date=record["how"]["date"],
        files=" and ".join(f"`{name}`" for name in files),
        height=height,
        width=width,
        comparison=record.get("comparison"),
        int8_method=record.get("int8", {}).get("method"),
        percent=percent,
        model_ref=LOCAL_PLACEHOLDER,
        backend="onnx-int8" if int8 else "onnx",
        file="model_int8.onnx" if int8 else "model.onnx",
    )


# The card's section on images of none of the classes (ood.json), between markers so that a later measurement
# replaces it; apart from the model-index, which holds the classification scores.
OPEN_SET_TEMPLATE_PATH = Path(__file__).with_name("model_card_open_set.md")
OPEN_SET_MARKERS = ("<!-- flowers_hf open set -->", "<!-- /flowers_hf open set -->")


def add_open_set_section(card_path: Path, report: dict[str, Any], plot: str) -> None:
    """Put the figures of an ``ood.json`` (``train.py --holdout_classes``, ``python -m flowers_hf.evaluate --ood``)
    into a run's model card, in place of earlier ones.

    Args:
        card_path: the run's ``README.md``.
        report: the ``ood.json`` (``flowers_hf.evaluation.ood.open_set_report``).
        plot: the score distributions' image, relative to the run folder.
    """
    rows = [
        {
            "name": SCORE_NAMES[name],
            "auroc": f"{entry['auroc']:.4f}",
            "fpr": percent(entry["fpr_at_95_tpr"]),
            "threshold": "—" if entry["threshold"] is None else f"{entry['threshold']:.4f}",
            "ood_accepted": "—" if entry["ood_accepted"] is None else percent(entry["ood_accepted"]),
            "known_accepted": "—" if entry["known_accepted"] is None else percent(entry["known_accepted"]),
        }
        for name, entry in report["scores"].items()
    ]
    intervals = [
        f"{SCORE_NAMES[name]} [{entry['threshold_interval'][0]:.4f}, {entry['threshold_interval'][1]:.4f}]"
        for name, entry in report["scores"].items()
        if entry.get("threshold_interval") is not None
    ]
    body = jinja2.Template(OPEN_SET_TEMPLATE_PATH.read_text(encoding="utf-8")).render(
        report=report, rows=rows, plot=plot, percent=percent, names=SCORE_NAMES, intervals=intervals
    )
    put_section(card_path, OPEN_SET_MARKERS, body)
    logger.info("Added the open-set figures to %s", card_path)


EXCLUDED_MARKERS = ("<!-- flowers_hf audit: excluded -->", "<!-- /flowers_hf audit: excluded -->")
_LISTED = 20  # images named in the card; excluded.json lists every one


def add_exclusion_section(card_path: Path, output_dir: Path) -> None:
    """Name the images ``train.py --exclude`` left out (``excluded.json``) in the run's model card; nothing when
    none were."""
    path = output_dir / EXCLUDED_FILE
    rows = json.loads(path.read_text()) if path.is_file() else []
    if not rows:
        return
    kinds = Counter(row["kind"] for row in rows)
    names = [f"{row['split']}/{row['file'] or '#' + str(row['index'])} ({row['kind']})" for row in rows[:_LISTED]]
    more = f", and {len(rows) - _LISTED} more (all in `{EXCLUDED_FILE}`)" if len(rows) > _LISTED else ""
    body = (
        f"## Data audit\n\n{len(rows)} images excluded after an audit "
        f"({', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}): {', '.join(names)}{more}. "
        "The data set itself is unchanged."
    )
    put_section(card_path, EXCLUDED_MARKERS, body)


DISTILLATION_FILE = "distillation.json"  # train.py --teacher: the teacher, the loss's weights, both test scores
DISTILLATION_MARKERS = ("<!-- flowers_hf distillation -->", "<!-- /flowers_hf distillation -->")
_SCORES = (("accuracy", "accuracy"), ("top5_accuracy", "top-5"), ("macro_f1", "macro F1"))


def add_distillation_section(card_path: Path, record: dict[str, Any]) -> None:
    """Say in the run's model card that the model was distilled, from what, and how the teacher scores beside it.

    Args:
        card_path: the run's ``README.md``.
        record: the run's ``distillation.json``.
    """
    rows = [
        f"| this model ({record['student_architecture']}, the student) | "
        + " | ".join(percent(record["student_test_metrics"][f"test_{key}"]) for key, _ in _SCORES)
        + " |",
        f"| teacher `{record['teacher']}` ({record['teacher_architecture']}) | "
        + " | ".join(percent(record["teacher_test_metrics"][f"test_{key}"]) for key, _ in _SCORES)
        + " |",
    ]
    body = "\n".join(
        [
            "## Distillation",
            "",
            f"Distilled from `{record['teacher']}` ({record['teacher_architecture']}): trained on "
            f"α · cross-entropy + (1 − α) · T² · KL(teacher ‖ student) with α = {record['alpha']:g} and "
            f"T = {record['temperature']:g}, the teacher's logits taken on the same augmented view as the student's "
            "(its calibration undone). Both on the same "
            f"{record['num_test_images']} test images, each with its own preprocessing:",
            "",
            "| model | " + " | ".join(f"test {name}" for _, name in _SCORES) + " |",
            "| --- | " + " | ".join("---" for _ in _SCORES) + " |",
            *rows,
        ]
    )
    put_section(card_path, DISTILLATION_MARKERS, body)
    logger.info("Added the distillation section to %s", card_path)
