"""The audit (``python -m flowers_hf.audit``) on data made to be wrong, and its cost: prints JSON figures.

    python bench/audit.py                                        # faults planted in the synthetic set
    python bench/audit.py --backbone_run runs/quickstart         # reuse a trained quickstart backbone
    python bench/audit.py --faults false --timing true            # Flowers-sized wall time, k-NN index growth

Faults (``--faults``): synthetic photos of other classes than the backbone learnt (``--synthetic_seed 1``, as
``bench/probe.py``), with label noise on 5 % of train, 20 exact and 20 near copies (resized and recompressed,
cropped, recompressed) of train images added to validation and test, and 20 images of no class
(``synthetic_ood``) added to train with random labels; saved with ``save_to_disk`` and audited as a folder, with the
features of the quickstart's ResNet18 (``configs/quickstart.yaml``, trained on ``--synthetic_seed 0`` first unless
``--backbone_run``). Reports precision and recall of leaks, label issues, and the outliers' AUROC.

Timing (``--timing``): the whole audit of a Flowers-sized synthetic set (102 classes x 80 = 8,160 JPEGs at 500 px)
with ResNet18 features at 224 px (random init: no pretrained weights offline), and the k-NN index (fit and query of
the near-copy search and of the hash search) on random vectors of 10k / 30k / 100k images.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from cleanlab.rank import get_label_quality_scores
from PIL import Image
from safetensors.numpy import load_file
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowers_hf.audit.__main__ import main as audit  # noqa: E402
from flowers_hf.audit.duplicates import feature_pairs, hash_pairs  # noqa: E402
from flowers_hf.audit.labels import out_of_sample_probabilities  # noqa: E402
from flowers_hf.core.cli import parse_args  # noqa: E402
from flowers_hf.data import load_data  # noqa: E402
from flowers_hf.data.arguments import DataArguments  # noqa: E402
from flowers_hf.data.images import to_rgb  # noqa: E402

logger = logging.getLogger("bench")


@dataclass
class AuditBenchArguments:
    faults: bool = field(default=True, metadata={"help": "Plant faults and score the audit's findings."})
    timing: bool = field(default=False, metadata={"help": "Flowers-sized wall time and the k-NN index's growth."})
    backbone_run: str | None = field(default=None, metadata={"help": "A trained quickstart run to reuse."})
    num_classes: int = field(default=20, metadata={"help": "Classes of the faulty set."})
    images_per_class: int = field(default=80, metadata={"help": "Images per class of the faulty set."})
    copies: int = field(default=20, metadata={"help": "Exact copies, and as many near copies, planted."})
    ood_images: int = field(default=20, metadata={"help": "Images of no class planted in train."})
    label_noise: float = field(default=0.05, metadata={"help": "Share of train relabelled to another class."})
    index_sizes: list[int] = field(default_factory=lambda: [10_000, 30_000, 100_000])
    timing_images_per_class: int = field(default=80, metadata={"help": "Flowers-sized: 102 x 80 = 8,160."})
    seed: int = field(default=0)
    label_classifier: str = field(default="knn", metadata={"help": "The audit's --label_classifier."})
    work_dir: str | None = field(
        default=None, metadata={"help": "Keep the faulty set and the audits' folders here (default: a temporary one)."}
    )


def _jpeg(image: Image.Image, quality: int = 90) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return {"bytes": buffer.getvalue(), "path": None}


NEAR = {
    "resized": lambda im: im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.BICUBIC),
    "cropped": lambda im: im.crop((im.width // 12, im.height // 12, im.width * 11 // 12, im.height * 11 // 12)),
    "recompressed": lambda im: im,
}


def faulty_set(args: AuditBenchArguments, folder: Path) -> dict[str, Any]:
    """Write the synthetic set with its planted faults to ``folder``; the ground truth."""
    rng = np.random.default_rng(args.seed)
    data_args = DataArguments(dataset="synthetic", synthetic_seed=1, synthetic_num_classes=args.num_classes,
                              synthetic_images_per_class=args.images_per_class)  # fmt: skip
    clean = load_data(args=data_args).splits
    rows = {name: [{"image": _encoded(r["image"]), "label": r["label"]} for r in split.cast_column(
        "image", datasets.Image(decode=False))] for name, split in clean.items()}  # fmt: skip
    train = len(rows["train"])
    flipped = rng.choice(train, round(args.label_noise * train), replace=False)
    for row in flipped:
        rows["train"][row]["label"] = int((rows["train"][row]["label"] + rng.integers(1, args.num_classes)) %
                                          args.num_classes)  # fmt: skip
    copied = rng.choice(np.setdiff1d(np.arange(train), flipped), 2 * args.copies, replace=False)
    leaks = []
    for n, source in enumerate(copied):
        exact = n < args.copies
        split = ("validation", "test")[n % 2]
        original = rows["train"][source]
        kind = "exact" if exact else list(NEAR)[n % 3]
        if exact:
            image = dict(original["image"])
        else:
            image = _jpeg(NEAR[kind](to_rgb(Image.open(io.BytesIO(original["image"]["bytes"])))), quality=60)
        leaks.append({"train": int(source), "split": split, "index": len(rows[split]), "exact": exact, "kind": kind})
        rows[split].append({"image": image, "label": clean["train"][int(source)]["label"]})
    ood = load_data(args=DataArguments(dataset="synthetic_ood", synthetic_images_per_class=80)).splits["test"]
    picked = rng.choice(len(ood), args.ood_images, replace=False)
    outliers = []
    for row in picked:
        outliers.append(len(rows["train"]))
        image = to_rgb(ood[int(row)]["image"]).resize(clean["train"][0]["image"].size)
        rows["train"].append({"image": _jpeg(image), "label": int(rng.integers(args.num_classes))})
    features = clean["train"].features
    saved = datasets.DatasetDict({
        name: datasets.Dataset.from_list(split_rows, features=features) for name, split_rows in rows.items()
    })  # fmt: skip
    saved.save_to_disk(str(folder))
    return {"flipped": sorted(int(i) for i in flipped), "leaks": leaks, "outliers": outliers}


def _encoded(value: dict[str, Any]) -> dict[str, Any]:
    data = value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes()
    return {"bytes": data, "path": None}


def train_backbone(output: Path) -> Path:
    command = [sys.executable, "train.py", "--config", "configs/quickstart.yaml", "--report_to", "none",
               "--output_dir", str(output)]  # fmt: skip
    logger.info("Backbone (not timed): %s", " ".join(command))
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
    return output


def score(found: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """Precision and recall of the leaks (exact and near) and label issues, the outliers' AUROC."""
    planted = {(t["train"], t["split"], t["index"]): t["exact"] for t in truth["leaks"]}
    kinds = {(t["train"], t["split"], t["index"]): t["kind"] for t in truth["leaks"]}
    reported, by_hash = set(), set()
    for pair in found["findings"]["leaks"]:
        train, other = (pair["a"], pair["b"]) if pair["a"]["split"] == "train" else (pair["b"], pair["a"])
        reported.add((train["index"], other["split"], other["index"]))
        if "hash" in pair["found_by"]:
            by_hash.add((train["index"], other["split"], other["index"]))
    hits = reported & planted.keys()
    flagged = {f["index"] for f in found["findings"]["label_issues"] if f["split"] == "train"}
    flipped = set(truth["flipped"])
    train_scores = np.array(found["outlier_scores"]["train"])
    is_ood = np.isin(np.arange(len(train_scores)), truth["outliers"])
    return {
        "leak_precision": round(len(hits) / max(len(reported), 1), 4),
        "leak_recall": round(len(hits) / len(planted), 4),
        "leak_recall_exact": round(sum(planted[h] for h in hits) / sum(planted.values()), 4),
        "leak_recall_near": round(sum(not planted[h] for h in hits) / sum(not e for e in planted.values()), 4),
        **{f"leak_recall_{kind}": _recall(kind, hits, kinds) for kind in NEAR},
        "leaks_reported": len(reported),
        # The perceptual hashes alone (a pair's found_by): what the features add shows against these.
        "leak_precision_hash": round(len(by_hash & planted.keys()) / max(len(by_hash), 1), 4),
        "leak_recall_hash": round(len(by_hash & planted.keys()) / len(planted), 4),
        "duplicates_reported": len(found["findings"]["duplicates"]),  # none planted: within a split, val/test
        "pairs_not_aligned": found["summary"]["pairs_not_aligned"],  # proposed by hashes or features, then rejected
        "label_precision": round(len(flagged & flipped) / max(len(flagged), 1), 4),
        "label_recall": round(len(flagged & flipped) / len(flipped), 4),
        "label_issues_reported_train": len(flagged),
        "label_issues_reported_all_splits": len(found["findings"]["label_issues"]),
        # The planted images of no class carry random labels: flagging them is not wrong either.
        "label_precision_without_ood": round(len(flagged & flipped) / max(len(flagged - set(truth["outliers"])), 1), 4),
        "outlier_auroc_train": round(float(roc_auc_score(is_ood, -train_scores)), 4),
        "leak_share": found["summary"]["leak_share"],
    }


def _recall(kind: str, hits: set, kinds: dict) -> float:
    return round(sum(kinds[h] == kind for h in hits) / sum(k == kind for k in kinds.values()), 4)


def label_curve(faulty: Path, audit_dir: Path, truth: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The label-error ranking at every cut, not only the set cleanlab flags: train images ordered by cleanlab's
    label quality from the audit's own out-of-sample probabilities (the same features, folds and seed), with the
    best precision at recall >= 0.5 and the precision at a few recalls."""
    folds, classifier, neighbours = options["cv_folds"], options["label_classifier"], options["label_neighbours"]
    data = load_data(args=DataArguments(dataset=str(faulty))).splits  # the audit's splits, in its row order
    labels = np.concatenate([np.asarray(split["label"]) for split in data.values()])
    (path,) = audit_dir.glob("features-*.safetensors")
    probabilities = out_of_sample_probabilities(load_file(path)["features"], labels, folds, classifier, neighbours)
    quality = get_label_quality_scores(labels, probabilities)[: len(data["train"])]
    hits = np.isin(np.argsort(quality, kind="stable"), truth["flipped"]).cumsum()
    recall, precision = hits / len(truth["flipped"]), hits / np.arange(1, len(hits) + 1)
    curve = {f"label_precision_at_recall_{r}": round(float(precision[np.argmax(recall >= r)]), 4)
             for r in (0.3, 0.5, 0.7, 0.9)}  # fmt: skip
    # What bounds the ranking: how often the cross-validated classifier agrees with the given labels.
    agreement = float((probabilities.argmax(axis=1) == labels).mean())
    return {"label_best_precision_at_recall_0.5": round(float(precision[recall >= 0.5].max()), 4), **curve,
            "label_classifier_agreement": round(agreement, 4)}  # fmt: skip


def bench_faults(args: AuditBenchArguments, tmp: Path) -> dict[str, Any]:
    backbone = Path(args.backbone_run) if args.backbone_run else train_backbone(tmp / "backbone")
    truth = faulty_set(args, tmp / "faulty")
    (tmp / "truth.json").write_text(json.dumps(truth))
    command = [str(tmp / "faulty"), "--model", str(backbone), "--output_dir", str(tmp / "audit"), "--disable_tqdm",
               "true", "--label_classifier", args.label_classifier]  # fmt: skip
    start = time.perf_counter()
    found = audit(command)
    seconds = time.perf_counter() - start
    shown = "python -m flowers_hf.audit FAULTY_DIR --model BACKBONE_RUN --output_dir OUT --label_classifier "
    shown += args.label_classifier
    curve = label_curve(tmp / "faulty", tmp / "audit", truth, found["options"])
    return {**score(found, truth), **curve, "faults_audit_wall_s": round(seconds, 1), "faults_command": shown}


def bench_timing(args: AuditBenchArguments, tmp: Path) -> dict[str, Any]:
    command = ["synthetic", "--synthetic_num_classes", "102", "--synthetic_images_per_class",
               str(args.timing_images_per_class), "--synthetic_image_size", "500", "--backbone", "resnet18",
               "--pretrained", "false", "--image_size", "224", "--output_dir", str(tmp / "timing"),
               "--disable_tqdm", "true"]  # fmt: skip
    drawn = DataArguments(dataset="synthetic", synthetic_num_classes=102, synthetic_image_size=500,
                          synthetic_images_per_class=args.timing_images_per_class)  # fmt: skip
    load_data(args=drawn)  # drawing the photos is not the audit's cost
    start, cpu = time.perf_counter(), _cpu_s()
    audit(command)
    result = {"flowers_sized_wall_s": round(time.perf_counter() - start, 1),
              "flowers_sized_cpu_s": round(_cpu_s() - cpu, 1),
              "flowers_sized_command": "python -m flowers_hf.audit " + " ".join(command[:-4])}  # fmt: skip
    rng = np.random.default_rng(0)
    for size in args.index_sizes:
        vectors = rng.standard_normal((size, 512)).astype(np.float32)
        start, cpu = time.perf_counter(), _cpu_s()
        feature_pairs(vectors, 0.97, 5)
        result[f"knn_features_{size}_s"] = round(time.perf_counter() - start, 1)
        result[f"knn_features_{size}_cpu_s"] = round(_cpu_s() - cpu, 1)
        bits = rng.integers(0, 2, (size, 64)).astype(bool)
        start, cpu = time.perf_counter(), _cpu_s()
        hash_pairs(bits, 6)
        result[f"knn_hashes_{size}_s"] = round(time.perf_counter() - start, 1)
        result[f"knn_hashes_{size}_cpu_s"] = round(_cpu_s() - cpu, 1)
        logger.info("k-NN at %d: %s", size, result)
    return result


def _cpu_s() -> float:
    """CPU seconds of this process's threads and its ended children: on shared cores, steadier than wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (args,) = parse_args((AuditBenchArguments,), argv, prog="bench/audit.py")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flowers_audit_bench_") as scratch:
        tmp = args.work_dir or scratch
        if args.faults:
            result |= bench_faults(args, Path(tmp))
        if args.timing:
            result |= bench_timing(args, Path(tmp))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
