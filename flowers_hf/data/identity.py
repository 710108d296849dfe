"""What a data set is, for everything a person reads: its name and link, whether it is Oxford Flowers-102 (and in
the official split, so that scores compare with published ones), and what one of its images shows.

It is decided once, from the source and the data options, recorded in the model's ``config.json`` (``dataset``),
and read back by the model card, the demo and the log lines: a user's own classes keep their own wording.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowers_hf.core.hub import is_hub_id
from flowers_hf.data.oxford import is_oxford_folder

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
SYNTHETIC_OOD = "synthetic_ood"  # built-in images of no class (flowers_hf.data.synthetic_ood), for --ood
# Hub copies of Oxford Flowers-102 known to hold its 102 classes (their splits differ: see OFFICIAL_SPLIT_SIZES).
FLOWERS102_COPIES = ("Donghyun99/Oxford-Flower-102", "dpdl-benchmark/oxford_flowers102", "nelorth/oxford-flowers")
OFFICIAL_SPLIT_SIZES = {"train": 1020, "validation": 1020, "test": 6149}
OXFORD_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"


@dataclass(frozen=True)
class DatasetIdentity:
    """A data set as a person reads about it.

    Args:
        source: the ``--dataset`` value: a Hub id, a local path or ``synthetic``.
        revision: the Hub revision it was loaded at, if any.
        name: how to call it in a sentence ("Oxford Flowers-102", "beans", a folder's name).
        url: its page (the Hub's, or Oxford's), if it has one.
        flowers102: whether it is (a copy of) Oxford Flowers-102.
        synthetic: whether it is the built-in drawn stand-in.
        subject: what one image shows, singular ("flower"), or ``None`` where nobody said.
        split_sizes: images per split as loaded.
    """

    source: str
    name: str
    revision: str | None = None
    url: str | None = None
    flowers102: bool = False
    synthetic: bool = False
    subject: str | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def official_split(self) -> bool | None:
        """For Flowers-102: whether the splits are the official 1,020 / 1,020 / 6,149 (``None``: not Flowers-102)."""
        return self.split_sizes == OFFICIAL_SPLIT_SIZES if self.flowers102 else None

    @property
    def hub_id(self) -> str | None:
        return self.source if is_hub_dataset_id(self.source) else None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "official_split": self.official_split}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DatasetIdentity | None:
        """The identity recorded in a model config, or ``None`` for a model saved before it was recorded."""
        if not values:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def is_hub_dataset_id(source: str) -> bool:
    """Whether ``--dataset`` names a Hub data set (``owner/name``, or a legacy one like ``beans``): not the
    synthetic set, nor anything that is or looks like a local path."""
    if source in (SYNTHETIC, SYNTHETIC_OOD) or Path(source).expanduser().exists() or source.startswith((".", "/", "~")):
        return False
    return is_hub_id(source) or "/" not in source


def is_flowers102_source(source: str, class_names: str = "auto") -> bool:
    """Whether ``source`` is Oxford Flowers-102: the Oxford files, a known Hub copy, or ``--class_names flowers102``."""
    if class_names == "flowers102":
        return True
    path = Path(source).expanduser()
    return source in FLOWERS102_COPIES or (path.is_dir() and is_oxford_folder(path))


def identify(
    source: str,
    class_names: str = "auto",
    subject: str | None = None,
    split_sizes: dict[str, int] | None = None,
    revision: str | None = None,
) -> DatasetIdentity:
    """The identity of a data source.

    Args:
        source: the ``--dataset`` value.
        revision: the ``--dataset_revision`` it was loaded at (kept for Hub ids only).
        class_names: the ``--class_names`` option (``auto`` or ``flowers102``).
        subject: the ``--subject`` option; default "flower" for Flowers-102 and the synthetic set.
        split_sizes: images per split, as loaded.
    """
    flowers102 = is_flowers102_source(source, class_names)
    synthetic = source == SYNTHETIC
    if synthetic:
        name, url = "the synthetic Flowers-102 stand-in", None
    elif flowers102:
        name, url = (
            "Oxford Flowers-102",
            f"https://huggingface.co/datasets/{source}" if is_hub_dataset_id(source) else OXFORD_URL,
        )
    elif is_hub_dataset_id(source):
        name, url = source, f"https://huggingface.co/datasets/{source}"
    else:
        name, url = Path(source).expanduser().resolve().name or source, None
    default_subject = "flower" if flowers102 or synthetic else None
    return DatasetIdentity(
        source=source,
        name=name,
        revision=revision if is_hub_dataset_id(source) else None,
        url=url,
        flowers102=flowers102,
        synthetic=synthetic,
        subject=subject or default_subject,
        split_sizes=dict(split_sizes or {}),
    )


def warn_if_not_comparable(identity: DatasetIdentity) -> None:
    """Flowers-102 in other splits than the official ones: say that its scores do not compare with published ones."""
    if identity.official_split is False:
        logger.warning(
            "%s has splits of %s images, not the official %s: its scores are not comparable with published "
            "Flowers-102 results (the model card says so)",
            identity.source, identity.split_sizes, OFFICIAL_SPLIT_SIZES,
        )  # fmt: skip
