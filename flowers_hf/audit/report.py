"""``audit.json`` (every finding, with split, index, file and scores) and ``audit.md`` (what to read first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.json"
AUDIT_MARKDOWN = "audit.md"
_LISTED = 10


def write_audit(audit: dict[str, Any], output_dir: Path) -> Path:
    """Write ``audit.json`` and ``audit.md``; the JSON's path."""
    path = output_dir / AUDIT_FILE
    path.write_text(json.dumps(audit, indent=1) + "\n")
    (output_dir / AUDIT_MARKDOWN).write_text(audit_markdown(audit))
    return path


def summary(findings: dict[str, Any], leak_share: dict[str, float], rejected: int) -> dict[str, Any]:
    """Counts per kind, the share of each evaluation split with a copy in train, and the proposed pairs whose
    thumbnails did not align."""
    return {**{kind: len(items) for kind, items in findings.items()}, "leak_share": leak_share,
            "pairs_not_aligned": rejected}  # fmt: skip


def audit_markdown(audit: dict[str, Any]) -> str:
    """The report for people: leaks first, then duplicates, label issues, outliers, image checks, statistics."""
    findings, counts = audit["findings"], audit["summary"]
    share = ", ".join(f"{split} {value:.1%}" for split, value in counts["leak_share"].items())
    pair_header = ["kind", "first (train side of a leak)", "second", "hash bits", "cosine", "alignment"]
    sections = [
        (f"Leaks: {counts['leaks']} train copies in validation/test (share affected: {share})",
         pair_header, [_pair_row(p) for p in findings["leaks"]]),
        (f"Duplicates within a split: {counts['duplicates']}", pair_header,
         [_pair_row(p) for p in findings["duplicates"]]),
        (f"Likely label errors: {counts['label_issues']} (cleanlab, cross-validated probabilities)",
         ["image", "given", "suggested", "label quality"],
         [[_where(f), f["given"], f["suggested"], f["label_quality"]] for f in findings["label_issues"]]),
        (f"Outliers: {counts['outliers']} (lowest cleanlab out-of-distribution score)", ["image", "label", "score"],
         [[_where(f), f["label"], f["outlier_score"]] for f in findings["outliers"]]),
        (f"Image checks: {counts['bad_images']} cannot be decoded, {counts['image_checks']} odd", ["image", "reason"],
         [[_where(f), f["reason"]] for f in findings["bad_images"] + findings["image_checks"]]),
        ("Class balance and image sizes (min / median / max; balance.png)",
         ["split", "images", "per class", "width", "height", "aspect ratio"], _statistics_rows(audit["statistics"])),
    ]  # fmt: skip
    lines = [
        f"# Audit of {audit['identity']['name']}",
        "",
        f"Features: {audit['features']}. Leave findings out of training with "
        f"`train.py --exclude {AUDIT_FILE}:leaks,label_issues` (nothing is deleted).",
        "",
    ]
    for title, header, rows in sections:
        lines += [f"## {title}", "", *_table(header, rows)]
    lines += ["![leaks](leaks.png) ![label issues](label_issues.png) ![outliers](outliers.png) ![balance](balance.png)"]
    return "\n".join(lines) + "\n"


def _pair_row(pair: dict[str, Any]) -> list[Any]:
    return [
        pair["kind"],
        _where(pair["a"]),
        _where(pair["b"]),
        pair["hash_distance"],
        pair["cosine"],
        pair["alignment"],
    ]


def _statistics_rows(statistics: dict[str, Any]) -> list[list[Any]]:
    return [
        [name, s["images"], f"{min(s['class_counts'])}-{max(s['class_counts'])}", _spread(s["width"]),
         _spread(s["height"]), _spread(s["aspect_ratio"])]
        for name, s in statistics["splits"].items()
    ]  # fmt: skip


def _where(item: dict[str, Any]) -> str:
    return f"{item['split']}/{item.get('file') or '#' + str(item['index'])}"


def _spread(values: dict[str, float]) -> str:
    return f"{values['min']:g} / {values['median']:g} / {values['max']:g}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["None found.", ""]
    shown = [[str(cell).replace("|", "\\|") for cell in row] for row in rows[:_LISTED]]
    more = [f"… and {len(rows) - _LISTED} more in {AUDIT_FILE}", ""] if len(rows) > _LISTED else [""]
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(r)} |" for r in shown), *more]
