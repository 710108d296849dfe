"""python -m flowers_hf.audit: planted copies across splits found as leaks with their share, a flipped label among
the top suspects, outliers scored, odd images checked, bad arguments refused; train.py --exclude (the reader in
flowers_hf.data.exclude, and one slow run end to end)."""

import io
import json

import datasets
import numpy as np
import pytest
import yaml
from helpers import TINY_RUN, write_imagefolder
from PIL import Image

from flowers_hf.audit.__main__ import main as audit
from flowers_hf.audit.alignment import Thumbnails, aligned_similarity, thumbnail
from flowers_hf.audit.catalog import Catalog, catalog
from flowers_hf.audit.duplicates import find_copies, hash_pairs, leak_share
from flowers_hf.audit.labels import label_issues
from flowers_hf.audit.outliers import image_checks, outlier_scores, outliers
from flowers_hf.core.errors import ArgumentError, DataError
from flowers_hf.data.exclude import EXCLUDED_FILE, exclude_audited, flagged_rows, parse_exclude
from flowers_hf.data.identity import DatasetIdentity

NAMES = ["a", "b", "c"]


def _photo(seed: int, size: int = 64) -> Image.Image:
    """A smooth random picture: structure at several scales, as photos have (a perceptual hash needs it)."""
    coarse = np.random.default_rng(seed).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _encoded(image: Image.Image, quality: int = 95) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return {"bytes": buffer.getvalue(), "path": None}


def _splits(rows: dict[str, list[tuple[dict, int]]]) -> datasets.DatasetDict:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict({"image": [r[0] for r in split], "label": [r[1] for r in split]}, features)
        for name, split in rows.items()
    })  # fmt: skip


@pytest.fixture(scope="module")
def planted() -> datasets.DatasetDict:
    """Train: 6 photos. Validation: 4 others and an exact copy of train #1. Test: 5 others and a copy of train #4
    shrunk to 48 px and recompressed at quality 50."""
    shrunk = _photo(4).resize((48, 48), Image.Resampling.BICUBIC)
    return _splits({
        "train": [(_encoded(_photo(i)), i % 3) for i in range(6)],
        "validation": [(_encoded(_photo(10 + i)), i % 3) for i in range(4)] + [(_encoded(_photo(1)), 1)],
        "test": [(_encoded(_photo(20 + i)), i % 3) for i in range(5)] + [(_encoded(shrunk, quality=50), 1)],
    })  # fmt: skip


def _pixels(data: datasets.DatasetDict) -> np.ndarray:
    """A plain feature: each image at 8 x 8, centred (copies keep their colours, other photos do not)."""
    vectors = [np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32).ravel() for split in data.values()
               for image in split["image"]]  # fmt: skip
    vectors = np.stack(vectors)
    return vectors - vectors.mean(axis=0)


def _copies(data: datasets.DatasetDict, min_cosine: float, min_alignment: float) -> dict:
    cat = catalog(data, disable_tqdm=True)
    return find_copies(cat, _pixels(data), Thumbnails(data, cat), max_distance=6, min_cosine=min_cosine,
                       min_alignment=min_alignment, neighbours=3)  # fmt: skip


def test_planted_copies_across_splits_are_leaks_with_their_share(planted):
    copies = _copies(planted, min_cosine=0.995, min_alignment=0.97)
    found = {(p["a"]["split"], p["a"]["index"], p["b"]["split"], p["b"]["index"]): p for p in copies["leaks"]}
    assert set(found) == {("train", 1, "validation", 4), ("train", 4, "test", 5)}
    assert found[("train", 1, "validation", 4)]["kind"] == "exact"
    assert found[("train", 1, "validation", 4)]["hash_distance"] == 0
    assert found[("train", 4, "test", 5)]["kind"] == "near"
    assert found[("train", 4, "test", 5)]["alignment"] >= 0.97
    assert copies["duplicates"] == []
    assert copies["leak_share"] == {"validation": 1 / 5, "test": round(1 / 6, 6)}


def test_pairs_the_features_propose_are_kept_only_where_the_images_align(planted):
    # Every image's 3 nearest are proposed (any cosine): only the two planted copies align.
    everything = _copies(planted, min_cosine=-1.0, min_alignment=0.0)
    aligned = _copies(planted, min_cosine=-1.0, min_alignment=0.97)
    proposed = len(everything["leaks"]) + len(everything["duplicates"])
    assert proposed > 10
    pairs = {(p["a"]["index"], p["b"]["split"], p["b"]["index"]) for p in aligned["leaks"]}
    assert pairs == {(1, "validation", 4), (4, "test", 5)} and aligned["duplicates"] == []
    assert aligned["rejected"] == proposed - 2 and everything["rejected"] == 0
    unrelated = [p["alignment"] for p in everything["leaks"] + everything["duplicates"] if p["alignment"] < 0.97]
    assert len(unrelated) == proposed - 2 and max(unrelated) < 0.9


def test_a_crop_resized_and_recompressed_aligns_with_its_original():
    original = _photo(7, 96)
    crop = original.crop((8, 8, 88, 88)).resize((60, 60), Image.Resampling.BICUBIC)  # 1/12 off every side
    moved = Image.fromarray(np.roll(np.asarray(original), 30, axis=1))  # the same colours, rearranged
    look = lambda image, quality=95: thumbnail(_encoded(image, quality))  # noqa: E731
    assert aligned_similarity(look(original), look(original)) == pytest.approx(1.0)
    assert aligned_similarity(look(original), look(crop, quality=50)) >= 0.97
    assert aligned_similarity(look(crop, quality=50), look(original)) >= 0.97  # either may be the crop
    assert aligned_similarity(look(original), look(moved)) < 0.9
    assert aligned_similarity(look(original), look(_photo(8, 96))) < 0.9
    flat = np.full((64, 64), 128, dtype=np.float32)
    assert aligned_similarity(flat, flat) == -1.0  # no texture: nothing to align, never called a copy


def test_hash_pairs_keep_the_threshold_in_bits():
    bits = np.zeros((3, 64), dtype=bool)
    bits[1, :6] = True  # 6 bits from row 0
    bits[2, :7] = True  # 7 bits from row 0, 1 from row 1
    assert hash_pairs(bits, 6) == {(0, 1): 6, (1, 2): 1}
    assert hash_pairs(bits, 0) == {}


def _catalog(labels: np.ndarray, split: list[str] | None = None, **overrides) -> Catalog:
    n = len(labels)
    values = dict(
        split=np.array(split or ["train"] * n), index=np.arange(n), file=[f"{i}.png" for i in range(n)],
        label=labels, class_names=NAMES, width=np.full(n, 64), height=np.full(n, 64), mode=["RGB"] * n,
        phash=np.zeros((n, 64), dtype=bool), digest=[str(i) for i in range(n)],
    )  # fmt: skip
    return Catalog(**{**values, **overrides})


def _clusters(per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    centres = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    return centres[labels] + rng.standard_normal((len(labels), 4)), labels


@pytest.mark.parametrize("classifier", ["knn", "logistic"])
def test_a_flipped_label_is_ranked_among_the_top_suspects(classifier):
    features, labels = _clusters()
    labels[7] = 2  # a class-0 image labelled c
    issues = label_issues(_catalog(labels), features, folds=5, classifier=classifier)
    assert 7 in [issue["index"] for issue in issues[:3]]
    top = next(issue for issue in issues if issue["index"] == 7)
    assert (top["given"], top["suggested"], top["file"]) == ("c", "a", "7.png")


def test_the_label_classifier_runs_on_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    from flowers_hf.audit import labels as module

    seen = []

    def recording(*args, **kwargs):
        seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
        return np.full((len(args[2]), 3), 1 / 3)

    monkeypatch.setattr(module, "cross_val_predict", recording)
    features, labels = _clusters()
    assert module.out_of_sample_probabilities(features, labels, folds=5).shape == (90, 3)
    assert seen == [{1}]


def test_an_image_of_no_class_has_the_lowest_outlier_score():
    features, labels = _clusters()
    features = np.vstack([features, [[0, 0, 0, 40.0]]])
    labels = np.append(labels, 0)
    scores = outlier_scores(features)
    assert scores.argmin() == len(labels) - 1 and 0 < scores.min() < scores.max() <= 1
    flagged = outliers(_catalog(labels), scores, share=0.01)  # 1 % of 91: one image
    assert [f["index"] for f in flagged] == [90] and flagged[0]["outlier_score"] == round(float(scores.min()), 6)


def test_odd_images_are_checked():
    cat = _catalog(
        np.zeros(4, dtype=int), width=np.array([64, 8, 400, 64]), height=np.array([64, 64, 64, 64]),
        mode=["RGB", "RGB", "L", "CMYK"],
    )  # fmt: skip
    found = {f["index"]: f["reason"] for f in image_checks(cat, min_side=16, max_aspect=4.0)}
    assert found == {1: "shorter side 8 px < 16; aspect ratio 8.0 > 4", 2: "aspect ratio 6.2 > 4", 3: "mode CMYK"}


def test_leak_share_counts_each_evaluation_image_once():
    cat = _catalog(np.zeros(5, dtype=int), split=["train", "train", "test", "test", "validation"],
                   index=np.array([0, 1, 0, 1, 0]))  # fmt: skip
    pair = {"a": {"split": "train", "index": 0}, "b": {"split": "test", "index": 1}}
    other = {"a": {"split": "train", "index": 1}, "b": {"split": "test", "index": 1}}
    assert leak_share([pair, other], cat) == {"validation": 0.0, "test": 0.5}


def test_the_audit_command_on_a_folder_finds_the_planted_leak(tmp_path):
    # An imagefolder tree: train/<class>/… in flat colours, validation and test other photos, and one photo planted
    # in train/a and (the same file) in test/b.
    root = write_imagefolder(tmp_path / "tree", {"train": {"a": 4, "b": 4}}, size=32)
    for split, first in (("validation", 30), ("test", 40)):
        for n, name in enumerate(("a", "a", "b", "b")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            _photo(first + n, 32).save(root / split / name / f"{n}.png")
    _photo(99, 32).save(root / "train" / "a" / "planted.png")
    (root / "test" / "b" / "planted.png").write_bytes((root / "train" / "a" / "planted.png").read_bytes())
    command = [str(root), "--backbone", "test_resnet", "--pretrained", "false", "--image_size", "32",
               "--output_dir", str(tmp_path / "audit"), "--disable_tqdm", "true", "--cv_folds", "2"]  # fmt: skip
    result = audit(command)
    exact = [p for p in result["findings"]["leaks"] if p["kind"] == "exact"]
    assert [(p["a"]["file"], p["b"]["file"]) for p in exact] == [("train/a/planted.png", "test/b/planted.png")]
    written = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert written["findings"] == result["findings"]
    assert written["summary"]["leak_share"]["test"] >= round(1 / 5, 6)
    assert written["statistics"]["splits"]["train"]["images"] == 9
    for name in ("audit.md", "leaks.png", "label_issues.png", "outliers.png", "balance.png"):
        assert (tmp_path / "audit" / name).stat().st_size > 0
    assert "## Leaks:" in (tmp_path / "audit" / "audit.md").read_text()
    cached = list((tmp_path / "audit").glob("features-*.safetensors"))
    assert len(cached) == 1
    again = audit(command)  # the features come from the cache: same file, same findings
    assert list((tmp_path / "audit").glob("features-*.safetensors")) == cached
    assert again["findings"] == result["findings"]


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ArgumentError, match="--model RUN or --backbone"):
        audit(["synthetic", "--model", "runs/x", "--backbone", "resnet18", "--output_dir", str(tmp_path)])
    with pytest.raises(ArgumentError, match="--min_alignment"):
        audit(["synthetic", "--min_alignment", "1.5", "--output_dir", str(tmp_path)])
    with pytest.raises(ArgumentError, match="--label_classifier forest: choose one of knn, logistic"):
        audit(["synthetic", "--label_classifier", "forest", "--output_dir", str(tmp_path)])
    with pytest.raises(ArgumentError, match="--label_neighbours"):
        audit(["synthetic", "--label_neighbours", "0", "--output_dir", str(tmp_path)])
    with pytest.raises(ArgumentError, match="--cv_folds"):
        audit(["synthetic", "--cv_folds", "1", "--output_dir", str(tmp_path)])
    with pytest.raises(ArgumentError, match=r"unknown kind.*typos"):
        parse_exclude("audit.json:leaks,typos")


AUDIT = {
    "identity": {"source": "synthetic", "revision": None, "split_sizes": {"train": 4, "validation": 2, "test": 2}},
    "findings": {
        "leaks": [{"a": {"split": "train", "index": 2, "file": None}, "b": {"split": "test", "index": 0, "file": None}},
                  {"a": {"split": "validation", "index": 1, "file": None},
                   "b": {"split": "train", "index": 0, "file": "x.png"}}],
        "duplicates": [{"a": {"split": "test", "index": 0, "file": None}, "b": {"split": "test", "index": 1,
                                                                                "file": None}}],
        "label_issues": [{"split": "train", "index": 2, "file": None}, {"split": "train", "index": 3, "file": None}],
    },
}  # fmt: skip


def test_exclusions_take_the_train_side_of_a_leak_and_each_row_once():
    rows = flagged_rows(AUDIT, ("leaks", "label_issues", "duplicates"))
    assert [(r["split"], r["index"], r["kind"]) for r in rows] == [
        ("train", 2, "leaks"), ("train", 0, "leaks"), ("train", 3, "label_issues"), ("test", 1, "duplicates"),
    ]  # fmt: skip
    assert parse_exclude("runs/a/audit.json")[1] == ("leaks",)


def test_excluded_images_are_absent_and_listed(tmp_path):
    (tmp_path / "audit.json").write_text(json.dumps(AUDIT))
    data = _splits({"train": [(_encoded(_photo(i)), 0) for i in range(4)],
                    "validation": [(_encoded(_photo(5 + i)), 0) for i in range(2)],
                    "test": [(_encoded(_photo(8 + i)), 0) for i in range(2)]})  # fmt: skip
    identity = DatasetIdentity("synthetic", "synthetic", split_sizes={"train": 4, "validation": 2, "test": 2})
    kept = exclude_audited(data, f"{tmp_path / 'audit.json'}:leaks,label_issues", identity, tmp_path)
    cast = lambda split: [v["bytes"] for v in split.cast_column("image", datasets.Image(decode=False))["image"]]  # noqa: E731
    assert cast(kept["train"]) == [cast(data["train"])[1]]  # rows 0, 2 (leaks) and 3 (label issue) are out
    assert len(kept["test"]) == 2 and len(kept["validation"]) == 2
    assert [r["index"] for r in json.loads((tmp_path / EXCLUDED_FILE).read_text())] == [2, 0, 3]
    other = DatasetIdentity("synthetic", "synthetic", split_sizes={"train": 5, "validation": 2, "test": 2})
    with pytest.raises(DataError, match="not this data set"):
        exclude_audited(data, str(tmp_path / "audit.json"), other, None)
    emptied = {**AUDIT, "findings": {"outliers": [{"split": "validation", "index": i, "file": None} for i in (0, 1)]}}
    (tmp_path / "emptied.json").write_text(json.dumps(emptied))
    with pytest.raises(DataError, match="leaves none of the 2 images of 'validation'"):
        exclude_audited(data, f"{tmp_path / 'emptied.json'}:outliers", identity, None)


@pytest.mark.slow
def test_train_leaves_out_what_the_audit_flagged_and_says_so_in_the_card(tmp_path):
    import train

    data_options = TINY_RUN[:6]  # the tiny run's synthetic set: 6 classes x 40 images of 32 px
    audit([data_options[1], *data_options[2:], "--backbone", "test_resnet", "--pretrained", "false",
           "--near_cosine", "0.999", "--output_dir", str(tmp_path / "audit"), "--disable_tqdm", "true"])  # fmt: skip
    found = json.loads((tmp_path / "audit" / "audit.json").read_text())
    expected = flagged_rows(found, ("leaks", "label_issues"))
    train_rows = sum(row["split"] == "train" for row in expected)
    assert train_rows > 0  # random features: the cross-validated classifier suspects many labels
    run = tmp_path / "run"
    train.main([*TINY_RUN, "--num_train_epochs", "1", "--output_dir", str(run),
                "--exclude", f"{tmp_path / 'audit' / 'audit.json'}:leaks,label_issues"])  # fmt: skip
    assert json.loads((run / EXCLUDED_FILE).read_text()) == expected
    assert yaml.safe_load((run / "train_config.yaml").read_text())["exclude"].endswith("audit.json:leaks,label_issues")
    card = (run / "README.md").read_text()
    assert f"{len(expected)} images excluded after an audit" in card
    assert f"- **train:** {found['identity']['split_sizes']['train'] - train_rows} images" in card
