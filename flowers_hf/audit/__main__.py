"""Audit a data set before trusting it: duplicates and leaks across splits, likely label errors, outliers.

    python -m flowers_hf.audit synthetic --backbone resnet18 --pretrained false --output_dir runs/audit
    python -m flowers_hf.audit /data/oxford-flowers102 --model runs/r18 --output_dir runs/audit_flowers
    python -m flowers_hf.audit data/my_tree --backbone resnet50 --output_dir runs/audit_tree   # train/<class>/…
    python train.py --config configs/quickstart.yaml --exclude runs/audit/audit.json:leaks,label_issues

SOURCE is any source train.py's --dataset reads (with the same data options, the same splits). Writes audit.json
(every finding with split, index, file and scores), audit.md, leaks.png, label_issues.png, outliers.png,
balance.png, bad_images.json, and the features (cached: a rerun with the same data and model reuses them).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from flowers_hf.audit.alignment import Thumbnails
from flowers_hf.audit.arguments import AuditArguments
from flowers_hf.audit.catalog import catalog
from flowers_hf.audit.duplicates import find_copies
from flowers_hf.audit.features import embeddings
from flowers_hf.audit.galleries import plot_balance, write_galleries
from flowers_hf.audit.labels import label_issues
from flowers_hf.audit.outliers import image_checks, outlier_scores, outliers
from flowers_hf.audit.report import AUDIT_MARKDOWN, summary, write_audit
from flowers_hf.audit.stats import image_statistics
from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.validate import BAD_IMAGES_FILE, drop_bad_images

logger = logging.getLogger("flowers_hf.audit")

PROG = "python -m flowers_hf.audit"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args, data_args = parse_args((AuditArguments, DataArguments), _expand_argv(argv), prog=PROG)
    output_dir = Path(args.output_dir).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)

    # The data as train.py reads it: the same splits and, after leaving out the images that cannot be decoded
    # (bad_images.json, a finding too), the same row numbers, which --exclude relies on.
    loaded = load_data(args=data_args)
    data = drop_bad_images(loaded.splits, "skip", output_dir)
    cat = catalog(data, args.disable_tqdm)
    features, described = embeddings(data, args, loaded.identity, output_dir)

    # The findings, leaks first; their scores; the statistics.
    copies = find_copies(cat, features, Thumbnails(data, cat), args.hash_distance, args.near_cosine,
                         args.min_alignment, args.neighbours, args.disable_tqdm)  # fmt: skip
    scores = outlier_scores(features)
    findings = {
        "leaks": copies["leaks"],
        "duplicates": copies["duplicates"],
        "label_issues": label_issues(cat, features, args.cv_folds, args.label_classifier, args.label_neighbours),
        "outliers": outliers(cat, scores, args.outlier_share),
        "bad_images": _bad_images(output_dir),
        "image_checks": image_checks(cat, args.min_side, args.max_aspect),
    }
    statistics = image_statistics(cat)
    audit = {
        "identity": loaded.identity.to_dict(),
        "features": described,
        "options": vars(args),
        "summary": summary(findings, copies["leak_share"], copies["rejected"]),
        "findings": findings,
        "outlier_scores": {name: scores[cat.split == name].round(6).tolist() for name in data},
        "statistics": statistics,
    }
    path = write_audit(audit, output_dir)
    write_galleries(data, findings, output_dir, args.gallery_size)
    plot_balance(statistics, output_dir / "balance.png")
    print(_summary_text(audit, path, output_dir))
    return audit


def _bad_images(output_dir: Path) -> list[dict[str, Any]]:
    return json.loads((output_dir / BAD_IMAGES_FILE).read_text())


def _expand_argv(argv: list[str] | None) -> list[str]:
    """``SOURCE`` comes first, without ``--dataset``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--dataset", argv[0], *argv[1:]]
    return argv


def _summary_text(audit: dict[str, Any], path: Path, output_dir: Path) -> str:
    counts = audit["summary"]
    share = ", ".join(f"{split} {value:.1%}" for split, value in counts["leak_share"].items())
    return "\n".join([
        f"Audit of {audit['identity']['name']} ({audit['features']}): {path}, {output_dir / AUDIT_MARKDOWN}",
        f"  leaks         {counts['leaks']:5d}   train copies in validation/test; share affected: {share}",
        f"  duplicates    {counts['duplicates']:5d}   within a split",
        f"  not copies    {counts['pairs_not_aligned']:5d}   proposed pairs whose images did not align",
        f"  label issues  {counts['label_issues']:5d}   likely mislabelled (cleanlab)",
        f"  outliers      {counts['outliers']:5d}   farthest from every class",
        f"  bad images    {counts['bad_images']:5d}   cannot be decoded; {counts['image_checks']} odd ones",
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
