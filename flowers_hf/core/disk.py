"""Writes that fail on a full disk: one line naming the path and the space it needed, instead of a traceback.

Every large write of a run goes through ``disk_full_guard``: the checkpoints, the decoded-image cache, the final
model folder and its reports. What is left behind stays usable: a checkpoint cut short is removed (the rerun resumes
from the previous complete one), ``datasets`` moves its cache files into place only once written, and the model
folder's files are written beside it and renamed into place (``atomic_folder``).

A full disk does not always surface as ``OSError(ENOSPC)``: ``torch.save``'s zip writer (torch 2.x) raises
``RuntimeError: [enforce fail at inline_container.cc:…] . unexpected pos …`` after ``basic_ios::clear: iostream
error``, and safetensors its ``SafetensorError``, both without an errno. Such an error from a guarded write counts as
a full disk when the space left there is less than the write needs; otherwise it passes through unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from flowers_hf.core.errors import DiskFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)
_WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)  # what a write that ran out of space raises
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
    except _WRITE_ERRORS as error:
        if isinstance(error, DiskFullError) or not is_disk_full(error, path, needed_bytes):
            raise
        free = free_mb(path)  # as the write found it, before the partial file is removed
        if remove is not None and Path(remove).is_dir():
            shutil.rmtree(remove, ignore_errors=True)
        elif remove is not None:
            Path(remove).unlink(missing_ok=True)
        raise DiskFullError(
            f"no space left on the device writing {path}: it needs about {_mb(needed_bytes / MB)} MB and "
            f"{_mb(free)} MB are free there. Free some space or write elsewhere" + (f"; {then}" if then else ""),
        ) from error


def is_disk_full(error: BaseException, path: str | Path, needed_bytes: int) -> bool:
    """Whether ``error``, raised by a write of about ``needed_bytes`` to ``path``, means the disk is full: an
    ENOSPC/EDQUOT anywhere in its chain, or a write error without an errno while less than that is free there.

    Args:
        error: what the write raised.
        path: what was being written.
        needed_bytes: about how much the write takes.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _FULL:
            return True
        cause = cause.__cause__ or cause.__context__
    unnumbered = not isinstance(error, OSError) or error.errno is None
    return unnumbered and free_mb(path) * MB < needed_bytes


def _mb(megabytes: float) -> str:
    """Whole megabytes, or one decimal below 10 (a small copy would read "0 MB")."""
    return f"{megabytes:,.0f}" if megabytes >= 10 else f"{megabytes:.1f}"


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
