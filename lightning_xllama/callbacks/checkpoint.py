"""Checkpoints that resume exactly: written only between optimizer steps, and on SIGTERM."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, saving only at optimizer-step boundaries and on SIGTERM.

    A checkpoint taken between gradient-accumulation micro-batches cannot resume exactly (the
    partial gradients are not in it), and Lightning's ModelCheckpoint takes one there: with
    ``every_n_train_steps``, the first micro-batch after a resume counts as the step it resumed
    at. This one skips every save that is not at the end of an optimizer step.

    On SIGTERM (a scheduler's pre-emption or time limit) the step in progress is finished and the
    run stops through Lightning's own path: its training loop raises ``SIGTERMException``, this
    callback writes the checkpoint (and ``last.ckpt`` with ``save_last``), and the process exits
    with status 0. Lightning's own handler is replaced while training runs: it stops between
    micro-batches, and with several ranks it broadcasts from inside the signal handler, where it can
    meet a collective of the training step. Here the handler only records the signal; at each step
    boundary the ranks add up what they received (one small all-reduce), so one rank getting the
    signal is enough, and all stop after the same step.

    Args:
        dirpath: folder of the checkpoints (default: the logger's ``checkpoints`` folder).
        filename: checkpoint name pattern, e.g. ``{epoch}-{step}``.
        every_n_train_steps: save every this many optimizer steps.
        train_time_interval: save at the first step boundary after this much time.
        every_n_epochs: save at the end of every this many epochs.
        save_top_k: checkpoints kept; without ``monitor``: 1 (the latest) or -1 (all).
        monitor: metric that ranks the checkpoints kept, e.g. ``val/loss``.
        mode: ``min`` or ``max`` for ``monitor``.
        save_last: also keep ``last.ckpt``, the one to resume from (``link``: a link to the latest).
        save_on_signal: on SIGTERM, finish the step, save and stop.
    """

    def __init__(
        self,
        dirpath: Optional[str] = None,
        filename: Optional[str] = None,
        every_n_train_steps: Optional[int] = None,
        train_time_interval: Optional[timedelta] = None,
        every_n_epochs: Optional[int] = None,
        save_top_k: int = 1,
        monitor: Optional[str] = None,
        mode: str = "min",
        save_last: Union[bool, Literal["link"]] = True,
        save_on_signal: bool = True,
    ):
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_top_k=save_top_k,
            monitor=monitor,
            mode=mode,
            save_last=save_last,
            save_on_exception=save_on_signal,
        )
        self.save_on_signal = save_on_signal
        self._received = False
        self._stopping = False
        self._previous_handler: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received = self._stopping = False

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_signal(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._take_signal(trainer)

    def _take_signal(self, trainer: L.Trainer) -> None:
        """Record SIGTERM here from the sanity check on (Lightning registers its handlers just
        before it; it restores them when fit ends). A signal Lightning's handler caught before
        (during the evaluation callbacks' pass before training) is taken over: the run trains
        to the first step boundary, saves there and stops, rather than stopping unsaved."""
        if not self.save_on_signal:
            return
        if trainer.received_sigterm:
            self._received = True
            trainer._signal_connector.received_sigterm = False
        if self._previous_handler is None:
            self._previous_handler = signal.signal(signal.SIGTERM, self._record_signal)

    def _record_signal(self, signum: int, frame: Optional[Any]) -> None:
        self._received = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step_done = (
            batch_idx + 1
        ) % trainer.accumulate_grad_batches == 0 or batch_idx + 1 == trainer.num_training_batches
        if not step_done:
            return
        if self.save_on_signal and self._signal_anywhere(trainer):
            rank_zero_info(
                f"SIGTERM received: saving and stopping after step {trainer.global_step}"
            )
            self._stopping = True
            # Lightning's loop checks this flag after the batch's hooks and raises SIGTERMException
            trainer._signal_connector.received_sigterm = True
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _signal_anywhere(self, trainer: L.Trainer) -> bool:
        if trainer.world_size == 1:
            return self._received
        flag = torch.tensor(float(self._received), device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="sum") > 0)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()
        if self._stopping and isinstance(
            exception, SIGTERMException
        ):  # other failures may be mid-step
            super().on_exception(trainer, pl_module, exception)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()
        super().on_train_end(trainer, pl_module)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None
