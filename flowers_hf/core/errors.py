"""The errors a user sees: a mistake in the input or a cause outside the program, each with what to do about it.

Every one derives from ``UserError``, which the command-line entry points (``flowers_hf.core.cli.run_cli``) turn into
one line and exit status 1 instead of a traceback. Each also derives from the built-in type it refines, so that code
catching ``FileNotFoundError``, ``ConnectionError`` or ``ValueError`` still catches it.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the person running the command can fix; the message says how."""


class ArgumentError(UserError, ValueError):
    """A command-line argument or ``--config`` preset value that cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the command needs is not there, or is not what it should be."""


class OfflineError(UserError, ConnectionError):
    """The Hugging Face Hub cannot be reached (or take an upload) and nothing local can stand in."""


class HubUnavailableError(OfflineError):
    """The Hub cannot be reached and the data set is not in the local cache."""


class PretrainedWeightsUnavailableError(OfflineError):
    """Pretrained weights were asked for but cannot be downloaded (offline) and are not cached."""


class HubPushError(OfflineError):
    """The Hub cannot take an upload now: no token, no network, or no write access."""


class DataError(UserError, ValueError):
    """The data cannot be used as it is: columns, labels, splits or classes."""


class BadImagesError(DataError):
    """Some images cannot be decoded and ``--on_bad_image error`` was asked for."""


class ClassMismatchError(DataError):
    """A model or checkpoint has other classes than the data set: another number, other names or another order."""


class UnreadableImageError(UserError, ValueError):
    """A file that cannot be used as a photo: not an image, truncated, empty, or too large to decode safely."""


class DiskFullError(UserError, OSError):
    """A write failed because the disk (or the user's quota) is full; the message names the path and the space."""


class VersionError(UserError, ImportError):
    """An installed library is older than this code supports (``flowers_hf.core.versions``)."""
