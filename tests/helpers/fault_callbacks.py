"""Callbacks that fault tests put into a ``fit`` config (tests/helpers is on the PYTHONPATH of
the runs they launch): slow steps that report their progress, and a signal sent at a chosen hook."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Optional

import lightning as L


class SlowSteps(L.Callback):
    """Writes the optimizer steps done to ``marker`` after every batch and sleeps, so a test can
    send a signal while training runs."""

    def __init__(self, marker: str, seconds: float = 0.2):
        self.marker, self.seconds = Path(marker), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        partial = self.marker.with_suffix(".partial")
        partial.write_text(str(trainer.global_step))
        partial.replace(self.marker)  # whole or not at all, for the test that reads it
        time.sleep(self.seconds)


class SignalSelf(L.Callback):
    """Sends SIGTERM to this process at ``hook``: ``sanity_check`` (the validation before
    training), ``train_start`` (where the evaluation callbacks measure the base model) or
    ``step`` (the first micro-batch after optimizer step ``step``)."""

    def __init__(self, hook: str, step: Optional[int] = None):
        self.hook, self.step = hook, step

    def _send(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def on_sanity_check_start(self, trainer, pl_module):
        if self.hook == "sanity_check":
            self._send()

    def on_train_start(self, trainer, pl_module):
        if self.hook == "train_start":
            self._send()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.hook == "step" and trainer.global_step == self.step:
            self._send()
            self.hook = "sent"
