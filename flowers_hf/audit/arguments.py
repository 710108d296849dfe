"""The audit's options: where the features come from, where the report goes, and the thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowers_hf.core.errors import ArgumentError

CLASSIFIERS = ("knn", "logistic")  # flowers_hf.audit.labels.out_of_sample_probabilities's


@dataclass
class AuditArguments:
    """``python -m flowers_hf.audit SOURCE``'s own options (the source's are ``DataArguments``)."""

    model: str | None = field(
        default=None, metadata={"help": "A run folder (or Hub repo) whose backbone gives the features."}
    )
    backbone: str | None = field(
        default=None,
        metadata={"help": "A timm architecture whose features are used instead (default: resnet18 if no --model)."},
    )
    pretrained: bool = field(
        default=True, metadata={"help": "--backbone with its pretrained weights (false: random init, offline)."}
    )
    image_size: int | None = field(default=None, metadata={"help": "Input size; default: the model's own."})
    output_dir: str = field(default="runs/audit", metadata={"help": "Where audit.json, audit.md and plots go."})
    batch_size: int = field(default=64, metadata={"help": "Images per batch of the feature pass."})
    hash_distance: int = field(
        default=6,
        metadata={"help": "Perceptual hashes (64-bit pHash) at most this many bits apart are the same photo."},
    )
    near_cosine: float = field(
        default=0.97, metadata={"help": "Features at least this cosine-similar are near copies (crops, edits)."}
    )
    min_alignment: float = field(
        default=0.97,
        metadata={"help": "A proposed pair of two files is a copy when one's grey thumbnail, scaled and shifted inside "
                          "the other, correlates at least this much (normalised cross-correlation; 0: no check)."},
    )  # fmt: skip
    neighbours: int = field(default=5, metadata={"help": "Nearest neighbours searched per image for near copies."})
    cv_folds: int = field(default=5, metadata={"help": "Folds of the cross-validated classifier for label errors."})
    label_classifier: str = field(
        default="knn",
        metadata={"help": "For label errors: knn (the nearest images' labels, distance-weighted) or logistic "
                          "(a logistic regression on the features)."},
    )  # fmt: skip
    label_neighbours: int = field(default=20, metadata={"help": "Nearest images whose labels --label_classifier knn "
                                                                 "weighs."})  # fmt: skip
    outlier_share: float = field(
        default=0.01, metadata={"help": "Share of images, lowest outlier score first, flagged as outliers."}
    )
    min_side: int = field(default=16, metadata={"help": "Images with a shorter side below this are flagged."})
    max_aspect: float = field(default=4.0, metadata={"help": "Images longer than this times their width (or the "
                                                                "reverse) are flagged."})  # fmt: skip
    gallery_size: int = field(default=12, metadata={"help": "Images (or pairs) per gallery."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})

    def __post_init__(self) -> None:
        if self.model and self.backbone:
            raise ArgumentError("Give --model RUN or --backbone TIMM_NAME, not both: the features come from one")
        if not self.model and not self.backbone:
            self.backbone = "resnet18"
        if not 0 <= self.hash_distance <= 32:
            raise ArgumentError(f"--hash_distance must be 0-32 bits of 64, got {self.hash_distance}")
        if not 0 < self.near_cosine <= 1:
            raise ArgumentError(f"--near_cosine must be in (0, 1], got {self.near_cosine}")
        if not 0 <= self.min_alignment <= 1:
            raise ArgumentError(f"--min_alignment must be in [0, 1], got {self.min_alignment}")
        if self.label_classifier not in CLASSIFIERS:
            raise ArgumentError(f"--label_classifier {self.label_classifier}: choose one of {', '.join(CLASSIFIERS)}")
        if self.cv_folds < 2:
            raise ArgumentError(f"--cv_folds must be at least 2, got {self.cv_folds}")
        if not 0 <= self.outlier_share < 1:
            raise ArgumentError(f"--outlier_share must be in [0, 1), got {self.outlier_share}")
        if min(self.neighbours, self.label_neighbours, self.batch_size) < 1:
            raise ArgumentError("--neighbours, --label_neighbours and --batch_size must be at least 1")
