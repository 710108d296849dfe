"""The options of ``python -m flowers_hf.evaluate``: what to evaluate and which measurements to add."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowers_hf.core.errors import ArgumentError
from flowers_hf.core.hub import is_hub_id
from flowers_hf.data import SPLITS
from flowers_hf.data.tta import TTA_VIEWS
from flowers_hf.evaluation.calibration import NUM_BINS
from flowers_hf.evaluation.corruptions import CORRUPTIONS, SEVERITIES

# Metric prefix per split, as training names its files (validation scores are "eval_*" in eval_results.json).
PREFIXES = {"train": "train", "validation": "eval", "test": "test"}


@dataclass
class EvaluationArguments:
    """What to evaluate and which measurements to add to the plain test pass."""

    model: str = field(
        metadata={"help": "A model folder written by train.py, or a Hub repo id; may come first without the flag."}
    )
    split: str = field(default="test", metadata={"help": "The split to evaluate: train, validation or test."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where results go; default MODEL/eval_<split> (required for a Hub id)."}
    )
    corruptions: bool = field(
        default=False, metadata={"help": "Run the corruption suite too: robustness.json and robustness.png."}
    )
    corruption_names: list[str] | None = field(
        default=None, metadata={"help": f"Only these corruptions; default all: {', '.join(CORRUPTIONS)}."}
    )
    severities: list[int] = field(
        default_factory=lambda: list(SEVERITIES), metadata={"help": "The corruption severities to run (1 to 5)."}
    )
    corruption_seed: int = field(
        default=0, metadata={"help": "Seed of the corruptions' random draws (per image, the same at every severity)."}
    )
    tta: bool = field(
        default=False, metadata={"help": "Evaluate with test-time augmentation too, accuracy and latency side by side."}
    )
    tta_views: str = field(
        default="ten_crop",
        metadata={"help": "flip (centre crop and mirror), five_crop (centre and corners) or ten_crop (both: 10)."},
    )
    save_calibration: bool = field(
        default=False,
        metadata={
            "help": "For a model folder without calibration: fold the temperature fitted on validation into its "
            "weights and store it with the unsure threshold in its config.json (train.py does this itself)."
        },
    )
    ood: str | None = field(
        default=None,
        metadata={
            "help": "Images of none of the model's classes: any source --dataset takes (its test split), "
            "synthetic_ood (the built-in shapes, textures and scenes), a folder of images in any layout, a list of "
            "files (.txt, one path a line), a glob ('photos/**/*.jpg') or several comma-separated; labels do not "
            "matter. Reports AUROC, FPR at 95%% "
            "TPR and the share of them the thresholds accept, for the maximum softmax probability, the maximum "
            "logit and the energy score: ood.json and ood_scores.png."
        },
    )
    save_open_set_rule: bool = field(
        default=True,
        metadata={
            "help": "With --ood, for a calibrated local model folder and the whole split: store the recommended rule "
            "(the score with the lowest FPR at 95%% TPR, its validation threshold) in its config.json, where "
            "ImageClassifier and the demo read it."
        },
    )
    update_card: bool = field(
        default=True, metadata={"help": "Add the scores to the model-index of MODEL/README.md, a run folder's card."}
    )
    push_results: str | None = field(
        default=None,
        metadata={
            "help": "A published model repository, OWNER/NAME: add the scores to its card's model-index and upload "
            "the output folder to eval_<split>/ in it, in one commit (needs the whole split)."
        },
    )
    calibration_bins: int = field(default=NUM_BINS, metadata={"help": "Equal-width bins of the ECE."})
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "At most this many images of each split (quick checks): a seeded sample, stratified by class."
        },
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass (TTA: times its views)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, …; auto: cuda when available."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ArgumentError(f"--split must be one of {SPLITS}, got {self.split!r}")
        unknown = sorted(set(self.corruption_names or ()) - set(CORRUPTIONS))
        if unknown:
            raise ArgumentError(f"--corruption_names: unknown {unknown}; known: {list(CORRUPTIONS)}")
        if not self.severities or not set(self.severities) <= set(SEVERITIES):
            raise ArgumentError(f"--severities must be among {SEVERITIES}, got {self.severities}")
        if self.tta_views not in TTA_VIEWS:
            raise ArgumentError(f"--tta_views must be one of {list(TTA_VIEWS)}, got {self.tta_views!r}")
        if self.output_dir is None and not Path(self.model).expanduser().is_dir():
            raise ArgumentError(f"--output_dir is needed: the model {self.model!r} is not a local folder")
        if self.save_calibration and (is_hub_id(self.model) or self.max_eval_samples is not None):
            raise ArgumentError("--save_calibration needs a local model folder and the whole validation split")
        if self.push_results is not None and (not is_hub_id(self.push_results) or self.max_eval_samples is not None):
            raise ArgumentError("--push_results needs a Hub repository id, OWNER/NAME, and the whole split")
        if self.batch_size < 1 or (self.max_eval_samples is not None and self.max_eval_samples < 1):
            raise ArgumentError("--batch_size and --max_eval_samples must be at least 1")
