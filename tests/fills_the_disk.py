"""Run by test_disk_full_real: ``train.py ARGS``, where the disk is filled up at the moment MOMENT names, leaving
LEAVE bytes free; the writes that follow meet the real full file system.

python tests/fills_the_disk.py MOMENT LEAVE BALLAST ARGS…

MOMENT: ``copy`` (as the first decoded copy is about to be written), ``checkpoint`` (as the checkpoint of step 9 is),
``model`` (as the final model folder is). BALLAST: the file that takes the space; deleting it frees it.
"""

import shutil
import sys
from pathlib import Path

import train
from flowers_hf.core.cli import run_cli
from flowers_hf.data import cache
from flowers_hf.model import modeling
from flowers_hf.training import trainer

CALL = {"copy": 1, "checkpoint": 3, "model": 1}  # which call of the size estimate comes just before the write
# The size estimate each write's disk_full_guard takes, computed just before the write starts.
ESTIMATE = {
    "copy": (cache, "_copy_bytes"),
    "checkpoint": (trainer, "_checkpoint_bytes"),
    "model": (modeling, "_weight_bytes"),
}


def fill(ballast: Path, leave: int) -> None:
    """Write zeros into ``ballast`` until ``leave`` bytes are free on its file system."""
    chunk = b"\0" * 2**16
    with ballast.open("ab") as out:
        while (free := shutil.disk_usage(ballast.parent).free) > leave:
            out.write(chunk[: min(len(chunk), free - leave)])
            out.flush()


if __name__ == "__main__":
    moment, leave, ballast, argv = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    module, name = ESTIMATE[moment]
    estimate, calls = getattr(module, name), []

    def filling_estimate(*args, **kwargs):
        calls.append(1)
        if len(calls) == CALL[moment]:
            fill(ballast, leave)
        return estimate(*args, **kwargs)

    setattr(module, name, filling_estimate)
    sys.exit(run_cli(train.main, argv))
