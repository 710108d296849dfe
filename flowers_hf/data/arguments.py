"""Command-line arguments as dataclasses, parsed by ``transformers.HfArgumentParser``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowers_hf.core.errors import ArgumentError
from flowers_hf.data.exclude import parse_exclude

# The default Flowers-102 copy: the original JPEGs (about 350 MB) in the official 1,020 / 1,020 / 6,149 split with
# labels in the Oxford order (its build script sets label = imagelabels.mat - 1 and splits by setid.mat). The
# revision is the one another public project pins for it; dpdl-benchmark/oxford_flowers102, the earlier default,
# stores ~10 times the bytes (about 3.4 GB of re-encoded parquet) for the same images.
DEFAULT_HUB_DATASET = "Donghyun99/Oxford-Flower-102"
# Hub copies whose revision is pinned when --dataset_revision is not given.
PINNED_REVISIONS = {DEFAULT_HUB_DATASET: "7e43fe37eeb9278138ab0bd2d0abb10d0f703d09"}
CLASS_NAMES = ("auto", "flowers102")
AUGMENT_POLICIES = ("default", "strong")


@dataclass
class DataArguments:
    """Where the images come from, and how missing splits and the synthetic set are made."""

    dataset: str = field(
        default=DEFAULT_HUB_DATASET,
        metadata={
            "help": "A Hub image-classification data set id (one image and one label column: beans, food101, "
            "uoft-cs/cifar10, …), a local folder (the Oxford distribution with jpg/ or 102flowers.tgz plus "
            "imagelabels.mat and setid.mat; a save_to_disk folder; anything datasets.load_dataset reads from a "
            "folder: an imagefolder tree train/<class>/…, with or without metadata.csv/.jsonl, or a Hub snapshot "
            "of parquet shards from `hf download REPO --repo-type dataset --local-dir DIR`), or 'synthetic' for "
            "the built-in offline set."
        },
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={
            "help": "Hub revision (branch, tag or commit); default: the pinned commit of a known copy, else main."
        },
    )
    class_names: str = field(
        default="auto",
        metadata={
            "help": "auto: the data set's own class names, except that a Flowers-102 source (the Oxford files, a "
            "known Hub copy of it) gets the canonical flower names; flowers102: treat the source as Flowers-102 "
            "(numeric classes 1…102 or 0…101 become flower names)."
        },
    )
    image_column: str | None = field(default=None, metadata={"help": "The image column, if names do not tell."})
    label_column: str | None = field(
        default=None, metadata={"help": "The label column, if names do not tell (CIFAR-100: fine_label)."}
    )
    subject: str | None = field(
        default=None,
        metadata={
            "help": "What one image shows, in the singular (flower, dish, leaf), for the demo and model card: "
            "'Not a <subject> I know'. Default: 'flower' for Flowers-102 and the synthetic set, else none."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded and generated data are cached."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of train held out as validation when the source has no validation split."}
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "Share of train held out as test when the source has no test split."}
    )
    split_seed: int = field(
        default=42,
        metadata={"help": "Seed of the stratified split that makes missing splits, and of --holdout_classes' draw."},
    )
    holdout_classes: int = field(
        default=0,
        metadata={
            "help": "Open-set protocol: leave this many classes (a draw seeded by --split_seed) out of every split; "
            "train.py then scores their test images as images of none of the classes (ood.json). 0: all classes."
        },
    )
    synthetic_num_classes: int = field(default=102, metadata={"help": "Synthetic set: number of classes."})
    synthetic_images_per_class: int = field(
        default=80,
        metadata={"help": "Synthetic set: images per class over all splits (80 gives 10/10/60 like Oxford)."},
    )
    synthetic_image_size: int = field(default=64, metadata={"help": "Synthetic set: shorter image side in pixels."})
    synthetic_image_format: str = field(default="jpeg", metadata={"help": "Synthetic set: 'jpeg' or 'png'."})
    synthetic_seed: int = field(
        default=0, metadata={"help": "Synthetic set: seed; the same seed draws the same images."}
    )
    cache_images: bool = field(
        default=True,
        metadata={
            "help": "Decode every image once before training (train shrunk to 1.15x the input size, validation and "
            "test resized and centre-cropped), stored uncompressed beside the source and reused by reruns and "
            "python -m flowers_hf.evaluate; false decodes the originals every epoch."
        },
    )
    on_bad_image: str = field(
        default="skip",
        metadata={
            "help": "Images that cannot be decoded (empty, not an image, truncated, over PIL's pixel limit), found "
            "before training and listed in OUTPUT_DIR/bad_images.json: 'skip' leaves them out, 'error' stops the run."
        },
    )

    exclude: str | None = field(
        default=None,
        metadata={
            "help": "AUDIT.json[:kinds]: leave out the images python -m flowers_hf.audit flagged, kinds among leaks "
            "(the train-side copy), duplicates, label_issues, outliers (default: leaks); listed in "
            "OUTPUT_DIR/excluded.json and the model card. Nothing is deleted."
        },
    )

    def __post_init__(self) -> None:
        if self.dataset_revision is None:
            self.dataset_revision = PINNED_REVISIONS.get(self.dataset)
        if self.exclude:
            parse_exclude(self.exclude)  # an unknown kind stops the run now, not after loading the data
        for name in ("validation_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ArgumentError(f"--{name} must lie strictly between 0 and 1, got {getattr(self, name)}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ArgumentError("--validation_fraction plus --test_fraction must leave some images for training")
        if self.synthetic_num_classes < 2:
            raise ArgumentError(f"--synthetic_num_classes must be at least 2, got {self.synthetic_num_classes}")
        if self.synthetic_images_per_class < 3:
            raise ArgumentError("--synthetic_images_per_class must be at least 3 (one image per split)")
        if self.synthetic_image_size < 16:
            raise ArgumentError(f"--synthetic_image_size must be at least 16 pixels, got {self.synthetic_image_size}")
        if self.synthetic_image_format not in ("jpeg", "png"):
            raise ArgumentError(
                f"--synthetic_image_format must be 'jpeg' or 'png', got {self.synthetic_image_format!r}"
            )
        if self.holdout_classes < 0:
            raise ArgumentError(f"--holdout_classes must not be negative, got {self.holdout_classes}")
        if self.class_names not in CLASS_NAMES:
            raise ArgumentError(f"--class_names must be one of {CLASS_NAMES}, got {self.class_names!r}")
        if self.on_bad_image not in ("skip", "error"):
            raise ArgumentError(f"--on_bad_image must be 'skip' or 'error', got {self.on_bad_image!r}")


@dataclass
class TransformArguments:
    """Preprocessing (taken from the timm model's data config unless overridden) and training augmentation."""

    image_size: int | None = field(default=None, metadata={"help": "Input size override; default: the model's own."})
    crop_pct: float | None = field(default=None, metadata={"help": "Eval centre-crop fraction override."})
    interpolation: str | None = field(default=None, metadata={"help": "Override: bilinear, bicubic or nearest."})
    mean: list[float] | None = field(default=None, metadata={"help": "Normalisation mean override (3 values)."})
    std: list[float] | None = field(default=None, metadata={"help": "Normalisation std override (3 values)."})
    min_crop_scale: float = field(
        default=0.25, metadata={"help": "RandomResizedCrop: smallest crop area as a share of the image."}
    )
    hflip_prob: float = field(default=0.5, metadata={"help": "Probability of a horizontal flip."})
    rotate_degrees: float = field(default=15.0, metadata={"help": "Random rotation within ± this many degrees."})
    rotate_prob: float = field(default=0.5, metadata={"help": "Probability of a random rotation."})
    color_jitter: float = field(
        default=0.2, metadata={"help": "Brightness, contrast and saturation jitter strength (0 turns it off)."}
    )
    hue_jitter: float = field(
        default=0.02, metadata={"help": "Hue jitter (fraction of the colour wheel); small, colour tells flowers apart."}
    )
    color_jitter_prob: float = field(default=0.8, metadata={"help": "Probability of colour jitter."})
    color_jitter_on_device: bool = field(
        default=False,
        metadata={
            "help": "Colour jitter as batch operations on the uint8 training batches on the device, beside the "
            "normalisation, instead of in the DataLoader workers, which then do only the geometry (crop, flip, "
            "rotation): for GPU hosts whose workers cannot keep up. The same distribution as the workers' jitter "
            "(tested). Not with --augment strong, whose photometric steps follow the jitter."
        },
    )
    augment: str = field(
        default="default",
        metadata={
            "help": "Training augmentation policy: default (crop, flip, rotation, colour jitter), or strong: the "
            "default plus the shifts between real photographs (exposure, white balance, blur, noise, JPEG, "
            "perspective, occlusion)."
        },
    )

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 8:
            raise ArgumentError(f"--image_size must be at least 8, got {self.image_size}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ArgumentError(f"--crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.interpolation not in (None, "bilinear", "bicubic", "nearest"):
            raise ArgumentError(f"--interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise ArgumentError(f"--{name} needs 3 values (R G B), got {value}")
        if self.std is not None and min(self.std) <= 0:
            raise ArgumentError(f"--std values must be positive, got {self.std}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ArgumentError(f"--min_crop_scale must lie in (0, 1], got {self.min_crop_scale}")
        for name in ("rotate_degrees", "color_jitter"):
            if getattr(self, name) < 0:
                raise ArgumentError(f"--{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.hue_jitter <= 0.5:
            raise ArgumentError(f"--hue_jitter must lie in [0, 0.5], got {self.hue_jitter}")
        for name in ("hflip_prob", "rotate_prob", "color_jitter_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ArgumentError(f"--{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.augment not in AUGMENT_POLICIES:
            raise ArgumentError(f"--augment must be one of {AUGMENT_POLICIES}, got {self.augment!r}")
        if self.color_jitter_on_device and self.augment == "strong":
            raise ArgumentError(
                "--color_jitter_on_device would move the jitter after --augment strong's photometric steps, which "
                "changes the augmentation: use one or the other"
            )
