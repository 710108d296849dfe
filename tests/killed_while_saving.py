"""Run by test_resume: ``train.py ARGS``, killed by SIGKILL while it writes the checkpoint of step STEP.

python tests/killed_while_saving.py STEP ARGS…
"""

import os
import signal
import sys

from transformers import Trainer

import train

if __name__ == "__main__":
    step, argv = int(sys.argv[1]), sys.argv[2:]
    save_rng_state = Trainer._save_rng_state

    def killed_after_the_weights(self: Trainer, output_dir: str) -> None:
        # By now the checkpoint holds its weights, optimizer and scheduler; not yet its RNG states and trainer state.
        if self.state.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        save_rng_state(self, output_dir)

    Trainer._save_rng_state = killed_after_the_weights
    train.main(argv)
