"""Writes that fail on a full disk: one line naming the path and the space it needed, instead of a traceback.

Every large write of a run goes through ``disk_full_guard``: the checkpoints, the decoded-image cache, the final
model folder and its reports. What is left behind stays usable: a checkpoint cut short is removed (the rerun resumes
from the previous complete one), ``datasets`` moves its cache files into place only once written, and the model
folder's files are written beside it and renamed into place (``atomic_folder``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flowers_hf.core.errors import DiskFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)
MB = 1024 * 1024


@contextlib.contextmanager
def disk_full_guard(
    path: str | Path, needed_bytes: int, then: str = "", remove: str | Path | None = None
) -> Iterator[None]:
    """Within the block, a write that fails for lack of space raises ``DiskFullError`` naming ``path``, the space it
    needed and the space left there.

    Args:
        path: what is being written (a file or folder).
        needed_bytes: about how much the write takes.
        then: what to do after freeing space, appended to the message.
        remove: a partly written file or folder to delete on failure, so that nothing half-written is left.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in _FULL or isinstance(error, DiskFullError):
            raise
        if remove is not None and Path(remove).is_dir():
            shutil.rmtree(remove, ignore_errors=True)
        elif remove is not None:
            Path(remove).unlink(missing_ok=True)
        raise DiskFullError(
            f"no space left on the device writing {path}: it needs about {needed_bytes / MB:,.0f} MB and "
            f"{free_mb(path):,.0f} MB are free there. Free some space or write elsewhere"
            + (f"; {then}" if then else ""),
        ) from error


def free_mb(path: str | Path) -> float:
    """Megabytes free on the file system of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / MB


@contextlib.contextmanager
def atomic_folder(folder: str | Path, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to write into; on success each file is renamed into ``folder``
    (``last`` after the others), so no file there is ever seen half-written; on failure nothing is moved.

    Args:
        folder: the destination (created if missing).
        last: file names to move after every other one (the weights, after the config that describes them).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=folder))
    try:
        yield staging
        names = sorted(p.name for p in staging.iterdir())
        for name in [n for n in names if n not in last] + [n for n in last if n in names]:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
