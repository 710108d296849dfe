"""The range of each core library this code supports, checked at the start of every command.

``SUPPORTED`` is the one table of these ranges; ``requirements.txt`` declares the same ones (a test holds them
equal), and ``constraints.txt`` pins the exact versions ``make setup`` installs. Only the installed metadata is
read: nothing here imports the libraries themselves, so the check runs before any of them can fail on import.
"""

from __future__ import annotations

import logging
from importlib import metadata

from packaging.version import InvalidVersion, Version

from flowers_hf.core.errors import VersionError

logger = logging.getLogger(__name__)

# package: (oldest supported, first unsupported major). transformers and huggingface-hub: the lent GPU machines'
# image pairs 5.17.0 and 1.33.0, and CI runs the dry GPU check and a training with them over the pinned environment
# (make oldest, tests/test_oldest.py). torch and torchvision: that image's pair, not run here (CI has no room for a
# second torch). accelerate: that image's and the pinned one. timm 1.0.31, the first whose save_for_hf takes
# data_config (model.modeling), and datasets 5.2.0, which the GPU check carries: the pinned versions.
SUPPORTED: dict[str, tuple[str, str]] = {
    "torch": ("2.11.0", "3"),
    "torchvision": ("0.26.0", "1"),
    "transformers": ("5.17.0", "6"),
    "huggingface-hub": ("1.33.0", "3"),
    "timm": ("1.0.31", "2"),
    "accelerate": ("1.15.0", "2"),
    "datasets": ("5.2.0", "6"),
}


def requirement(package: str) -> str:
    """The pip requirement of ``package``'s supported range, e.g. ``transformers>=5.17.0,<6``.

    Args:
        package: a key of ``SUPPORTED``.
    """
    oldest, below = SUPPORTED[package]
    return f"{package}>={oldest},<{below}"


def too_old(installed: dict[str, str | None]) -> dict[str, str]:
    """The packages whose installed version is older than ``SUPPORTED`` allows, with that version; a warning is
    logged for those newer than the range. A pre-release or local build counts as its release: torch
    ``2.11.0a0+git`` (a vendor's build) is 2.11.0.

    Args:
        installed: package name -> installed version, ``None`` where it is not installed (left to its import).
    """
    old = {}
    for package, version in installed.items():
        if version is None:
            continue
        oldest, below = SUPPORTED[package]
        try:
            release = Version(version).release
        except InvalidVersion:
            logger.warning("%s %s: not a version this check can read; left unchecked", package, version)
            continue
        if release < Version(oldest).release:
            old[package] = version
        elif release >= Version(below).release:
            logger.warning("%s %s is newer than the tested range %s", package, version, requirement(package))
    return old


def installed_versions() -> dict[str, str | None]:
    """The installed version of each package of ``SUPPORTED``, from its metadata (``None`` if not installed)."""
    versions: dict[str, str | None] = {}
    for package in SUPPORTED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def check_versions(installed: dict[str, str | None] | None = None) -> None:
    """Stop with one line naming each too-old core library, the version found, the oldest supported and the pip
    command that fixes it.

    Args:
        installed: the versions to check (default: this environment's, ``installed_versions()``).

    Raises:
        VersionError: a core library is older than ``SUPPORTED`` allows.
    """
    old = too_old(installed_versions() if installed is None else installed)
    if old:
        found = ", ".join(f"{package} {version} (needs >={SUPPORTED[package][0]})" for package, version in old.items())
        fix = " ".join(f"'{requirement(package)}'" for package in old)
        raise VersionError(f"installed {found}; upgrade with: pip install {fix}")
