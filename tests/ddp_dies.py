"""Run by test_faults: ``train.py ARGS`` as one process of an ``accelerate launch``, where the process of rank 1
kills itself with SIGKILL at the moment MODE names.

python tests/ddp_dies.py MODE FLAG_FILE ARGS…

The time of the death goes to FLAG_FILE with the suffix ``.died``.

MODE: ``mid_epoch`` (as optimizer step 5 begins, inside epoch 2), ``all_mid_epoch`` (the same, every process: each
machine of a launch killed at once), ``checkpoint`` (as the checkpoint of step 6 is
written by rank 0), ``final_model`` (while rank 0 writes the final model folder: it marks FLAG_FILE with the weights
written but not yet in place, then takes 30 s, long enough to be killed mid-write).
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path

from transformers import Trainer

import train
from flowers_hf.model import modeling

RANK = int(os.environ.get("RANK", "0"))


def die() -> None:
    if RANK == 1 or not DIED.exists():
        DIED.write_text(str(time.time()))
    print(f"ddp_dies: rank {RANK} kills itself", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    mode, flag, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    DIED = flag.with_suffix(".died")  # when rank 1 died, for the test to time the others' end
    if (mode == "mid_epoch" and RANK == 1) or mode == "all_mid_epoch":
        training_step = Trainer.training_step

        def dying_step(self, *args, **kwargs):
            if self.state.global_step == 4:
                die()
            return training_step(self, *args, **kwargs)

        Trainer.training_step = dying_step
    elif mode == "checkpoint":
        save_checkpoint = Trainer._save_checkpoint

        def dying_save(self, model, trial):
            if self.state.global_step == 6 and RANK == 1:
                time.sleep(0.5)  # rank 0 is writing by now
                die()
            return save_checkpoint(self, model, trial)

        Trainer._save_checkpoint = dying_save
    elif mode == "final_model":
        save_for_hf = modeling.save_for_hf

        def slow_save(*args, **kwargs):
            save_for_hf(*args, **kwargs)
            flag.touch()
            time.sleep(30)

        def die_once_flagged() -> None:
            while not flag.exists():
                time.sleep(0.1)
            die()

        modeling.save_for_hf = slow_save
        if RANK == 1:
            threading.Thread(target=die_once_flagged, daemon=True).start()
    train.main(argv)
