"""Exact and near duplicates within and across splits: perceptual hashes propose exact, re-encoded and resized
copies, feature cosine similarity (scikit-learn's k-NN index) crops and small edits; a proposed pair that is not the
same file is kept when its thumbnails align (``alignment.py``). A pair with one image in train and the other in
validation or test is a leak; any other pair is a duplicate."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from flowers_hf.audit.alignment import Thumbnails
from flowers_hf.audit.catalog import Catalog

EVALUATION_SPLITS = ("validation", "test")


def hash_pairs(phash: np.ndarray, max_distance: int) -> dict[tuple[int, int], int]:
    """Rows whose 64-bit hashes are at most ``max_distance`` bits apart: ``{(i, j): bits}`` with ``i < j``."""
    index = NearestNeighbors(metric="hamming").fit(phash)
    # scikit-learn's Hamming distance is the share of differing bits; the small margin keeps the boundary in.
    distances, neighbours = index.radius_neighbors(phash, radius=(max_distance + 0.5) / phash.shape[1])
    return {
        (i, int(j)): round(float(d) * phash.shape[1])
        for i, (row_d, row_n) in enumerate(zip(distances, neighbours, strict=True))
        for d, j in zip(row_d, row_n, strict=True)
        if i < j
    }


def feature_pairs(features: np.ndarray, min_cosine: float, neighbours: int) -> dict[tuple[int, int], float]:
    """Rows among each other's ``neighbours`` nearest whose features are at least ``min_cosine`` similar."""
    k = min(neighbours + 1, len(features))
    distances, indices = NearestNeighbors(n_neighbors=k, metric="cosine").fit(features).kneighbors(features)
    pairs: dict[tuple[int, int], float] = {}
    for i, (row_d, row_n) in enumerate(zip(distances, indices, strict=True)):
        for d, j in zip(row_d, row_n, strict=True):
            if int(j) != i and 1 - d >= min_cosine:
                pairs[(min(i, int(j)), max(i, int(j)))] = round(1 - float(d), 5)
    return pairs


def find_copies(
    cat: Catalog,
    features: np.ndarray,
    thumbnails: Thumbnails,
    max_distance: int,
    min_cosine: float,
    min_alignment: float,
    neighbours: int,
    disable_tqdm: bool = True,
) -> dict[str, Any]:
    """``{"leaks": [...], "duplicates": [...], "leak_share": {split: share}, "rejected": n}``: each pair as ``{"a",
    "b", "kind", "hash_distance", "cosine", "alignment", "found_by"}`` (``a`` the earlier row; ``kind`` exact for the
    same file, else near: re-encoded, resized, cropped or edited), leaks first by split, closest first. A proposed
    pair of two files is kept when its ``alignment`` is at least ``min_alignment`` (0: every one); ``rejected``
    counts the others."""
    hashed = hash_pairs(cat.phash, max_distance)
    embedded = feature_pairs(features, min_cosine, neighbours)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    leaks, duplicates, rejected = [], [], 0
    proposed = sorted(hashed.keys() | embedded.keys())
    for i, j in tqdm(proposed, desc="Aligning the proposed copies", disable=disable_tqdm, leave=False):
        exact = cat.digest[i] == cat.digest[j]
        alignment = 1.0 if exact else round(thumbnails.similarity(i, j), 4)
        if alignment < min_alignment:
            rejected += 1
            continue
        bits = hashed.get((i, j), int(np.count_nonzero(cat.phash[i] != cat.phash[j])))
        pair = {
            "a": cat.item(i), "b": cat.item(j), "kind": "exact" if exact else "near", "hash_distance": bits,
            "cosine": round(float(unit[i] @ unit[j]), 5), "alignment": alignment,
            "found_by": [name for name, found in (("hash", hashed), ("features", embedded)) if (i, j) in found],
        }  # fmt: skip
        (leaks if is_leak(str(cat.split[i]), str(cat.split[j])) else duplicates).append(pair)
    order = lambda p: (p["hash_distance"], -p["cosine"])  # noqa: E731
    return {
        "leaks": sorted(leaks, key=order),
        "duplicates": sorted(duplicates, key=order),
        "leak_share": leak_share(leaks, cat),
        "rejected": rejected,
    }


def is_leak(split_a: str, split_b: str) -> bool:
    """A pair across train and an evaluation split."""
    return {split_a, split_b} in ({"train", name} for name in EVALUATION_SPLITS)


def leak_share(leaks: list[dict[str, Any]], cat: Catalog) -> dict[str, float]:
    """The share of each evaluation split's images that have a copy in train."""
    share = {}
    for name in EVALUATION_SPLITS:
        size = int(np.count_nonzero(cat.split == name))
        leaked = {p[side]["index"] for p in leaks for side in ("a", "b") if p[side]["split"] == name}
        share[name] = round(len(leaked) / size, 6) if size else 0.0
    return share
