"""``train.py --exclude audit.json[:kinds]``: leave out the images an audit (``python -m flowers_hf.audit``) flagged.

Nothing is deleted from the data: the flagged rows are left out of the loaded splits, and ``excluded.json`` in the
run folder lists them (the model card names them). Which copy of a pair goes:

- ``leaks`` (the same photo in train and in validation or test): the train-side copy, so that validation and test
  stay the images every other run is scored on (a published split stays the published split);
- ``duplicates`` (a copy within one split, or between validation and test): the second of the pair;
- ``label_issues`` and ``outliers``: the flagged image, in whichever split it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets

from flowers_hf.core.errors import ArgumentError, DataError, MissingFileError
from flowers_hf.data.identity import DatasetIdentity

logger = logging.getLogger(__name__)

KINDS = ("leaks", "duplicates", "label_issues", "outliers")
DEFAULT_KINDS = ("leaks",)
EXCLUDED_FILE = "excluded.json"


def parse_exclude(spec: str) -> tuple[Path, tuple[str, ...]]:
    """``PATH[:kind,kind…]`` as the audit file and the kinds to leave out (default: leaks)."""
    path, _, kinds = spec.partition(":")
    chosen = tuple(kind.strip() for kind in kinds.split(",") if kind.strip()) or DEFAULT_KINDS
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise ArgumentError(f"--exclude: unknown kind(s) {', '.join(unknown)}; choose among {', '.join(KINDS)}")
    return Path(path).expanduser(), chosen


def flagged_rows(audit: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows to leave out, ``{"split", "index", "file", "kind"}``, each once (first kind wins), in audit order."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for kind in kinds:
        for finding in audit["findings"].get(kind, []):
            item = _excluded_item(kind, finding)
            rows.setdefault((item["split"], item["index"]), {**item, "kind": kind})
    return list(rows.values())


def _excluded_item(kind: str, finding: dict[str, Any]) -> dict[str, Any]:
    if kind == "leaks":
        return finding["a"] if finding["a"]["split"] == "train" else finding["b"]
    if kind == "duplicates":
        return finding["b"]
    return {key: finding[key] for key in ("split", "index", "file")}


def exclude_audited(
    data: datasets.DatasetDict, spec: str | None, identity: DatasetIdentity, output_dir: Path | None
) -> datasets.DatasetDict:
    """``data`` without the rows ``--exclude`` names (after ``drop_bad_images``, as the audit indexes them); the
    rows listed in ``output_dir/excluded.json`` (``[]`` without ``--exclude``).

    Args:
        data: the splits as training reads them.
        spec: ``--exclude``: ``audit.json[:kinds]``, or ``None``.
        identity: the loaded data set's, which must be the audited one's.
        output_dir: the run folder, or ``None``.
    """
    rows = _rows(spec, identity) if spec else []
    if output_dir is not None:
        (Path(output_dir) / EXCLUDED_FILE).write_text(json.dumps(rows, indent=1) + "\n")
    if not rows:
        return data
    logger.warning("Leaving out %d images an audit flagged (%s): listed in %s", len(rows), spec, EXCLUDED_FILE)
    kept = {}
    for name, split in data.items():
        drop = {row["index"] for row in rows if row["split"] == name}
        if drop and len(drop) >= len(split):
            raise DataError(f"--exclude {spec} leaves none of the {len(split)} images of '{name}'; choose fewer kinds")
        kept[name] = split.select([i for i in range(len(split)) if i not in drop]) if drop else split
    return datasets.DatasetDict(kept)


def _rows(spec: str, identity: DatasetIdentity) -> list[dict[str, Any]]:
    path, kinds = parse_exclude(spec)
    if not path.is_file():
        raise MissingFileError(f"--exclude: {path} does not exist; write it with python -m flowers_hf.audit SOURCE")
    audit = json.loads(path.read_text())
    audited = audit.get("identity") or {}
    mine = identity.to_dict()
    if any(audited.get(key) != mine.get(key) for key in ("source", "revision", "split_sizes")):
        raise DataError(
            f"--exclude: {path} audits {audited.get('source')!r} with splits {audited.get('split_sizes')}, not this "
            f"data set ({mine['source']!r}, {mine['split_sizes']}); audit this data set with the same data options"
        )
    return flagged_rows(audit, kinds)
