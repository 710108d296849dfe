"""Ctrl-C during training: finish the step, write a checkpoint, stop; the same command then resumes from it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# torchrun's agent passes the Ctrl-C it gets on to its workers, which have already had it from the terminal:
# a second SIGINT this soon after the first is the same keypress, not a second one.
_SAME_KEYPRESS_S = 1.0


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a Ctrl-C after writing a checkpoint."""


class SaveOnInterrupt(TrainerCallback):
    """On the first SIGINT, save a checkpoint at the end of the current optimizer step (or right after an
    evaluation under way) and stop training; on a second one, raise ``KeyboardInterrupt`` at once.

    The handler is installed from ``on_train_begin`` to ``on_train_end`` (or ``restore``) in the main thread only.
    ``interrupted`` tells the caller, after ``Trainer.train`` returns, that training stopped early.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._stopped_at: int | None = None  # the step whose end saved and stopped
        self._first_at = 0.0
        self._pid: int | None = None
        self._reports = True  # the main process says what happens; the others stay quiet
        self._previous: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._reports = state.is_world_process_zero
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if _on_any_process(self.interrupted, args):
            self.interrupted = True
            self._stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._stopped_at == state.global_step and not float(state.epoch).is_integer():
            # Saved at the step already; evaluating part of an epoch would count toward early stopping (an
            # epoch that did end is evaluated and saved as usual, as an uninterrupted run would).
            control.should_evaluate = control.should_save = control.should_log = False

    def on_save(self, args, state, control, **kwargs):
        if _on_any_process(self.interrupted, args):  # Ctrl-C during the evaluation before this save
            self.interrupted = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Put back the SIGINT handler there was before training (also when training raised)."""
        if self._pid == os.getpid() and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker: the main process decides, and shuts the workers down
        if self.interrupted and time.monotonic() - self._first_at > _SAME_KEYPRESS_S:
            self.restore()
            raise KeyboardInterrupt
        if not self.interrupted:
            self._first_at = time.monotonic()
            if self._reports:
                logger.warning(
                    "Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again: stop at once)"
                )
        self.interrupted = True


def _on_any_process(flag: bool, args: Any) -> bool:
    """``flag`` or'ed over all processes, so that every process saves and stops at the same step."""
    if args.world_size <= 1 or not torch.distributed.is_initialized():
        return flag
    # One value per step; the Trainer already waits for every step's loss (logging_nan_inf_filter).
    value = torch.tensor([float(flag)], device=args.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
