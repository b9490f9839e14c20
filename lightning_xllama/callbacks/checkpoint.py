"""Checkpoints that resume exactly: written only between optimizer steps, atomically, and on
SIGTERM or Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_xllama.runtime.checkpoint_io import install_atomic_io, replace_folder

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals that finish the step in progress, save and stop."""
_last_stop_signal: list[str] = []


def stop_signal_name() -> str:
    """Name of the signal that last asked this process to stop (SIGTERM when none was seen)."""
    return _last_stop_signal[-1] if _last_stop_signal else "SIGTERM"


def record_stop_signal(signum: int) -> None:
    _last_stop_signal[:] = [signal.Signals(signum).name]


def sigint_as_sigterm(trainer: L.Trainer) -> Any:
    """A SIGINT handler for a fit without :class:`ResumableCheckpoint`: Ctrl-C takes Lightning's
    SIGTERM path (stop after the batch, then the caller names the steps not saved) rather than
    raising ``KeyboardInterrupt`` wherever the program is. A second Ctrl-C, or one once the fit
    is over, raises ``KeyboardInterrupt`` as Python's own handler does. Returns the handler it
    replaced."""

    def handler(signum: int, frame: Optional[Any]) -> None:
        if trainer.state.status != TrainerStatus.RUNNING:  # the fit is over: Python's default
            raise KeyboardInterrupt
        if _last_stop_signal == ["SIGINT"] and trainer.received_sigterm:
            raise KeyboardInterrupt
        record_stop_signal(signum)
        rank_zero_info("SIGINT received: stopping after this batch (Ctrl-C again: at once)")
        trainer._signal_connector.received_sigterm = True

    _last_stop_signal.clear()
    return signal.signal(signal.SIGINT, handler)


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, saving only at optimizer-step boundaries, atomically, and on
    SIGTERM or SIGINT.

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
    signal is enough, and all stop after the same step. Ctrl-C (SIGINT) is handled the same way;
    a second Ctrl-C stops at once, unsaved.

    Checkpoints are written atomically where they live (the strategy's default writer is
    replaced by :class:`~lightning_xllama.runtime.checkpoint_io.AtomicCheckpointIO`): a kill or a full
    disk during a save leaves the previous checkpoint under its name, never part of a new one.
    A sharded checkpoint (a folder, one file per rank) is written into a hidden folder beside
    its name and moved in once every rank has written (:func:`replace_folder`); with
    ``save_last: link`` the link is made under a temporary name and renamed over ``last.ckpt``.

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
        save_on_signal: on SIGTERM or SIGINT, finish the step, save and stop.
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
        self._previous_handlers: dict[int, Any] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        install_atomic_io(trainer.strategy)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received = self._stopping = False
        if not trainer.received_sigterm:
            _last_stop_signal.clear()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_signal(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._take_signal(trainer)

    def _take_signal(self, trainer: L.Trainer) -> None:
        """Record SIGTERM and SIGINT here from the sanity check on (Lightning registers its handlers just
        before it; it restores them when fit ends). A signal Lightning's handler caught before
        (during the evaluation callbacks' pass before training) is taken over: the run trains
        to the first step boundary, saves there and stops, rather than stopping unsaved."""
        if not self.save_on_signal:
            return
        if trainer.received_sigterm:
            self._received = True
            trainer._signal_connector.received_sigterm = False
        for signum in STOP_SIGNALS:
            if signum not in self._previous_handlers:
                self._previous_handlers[signum] = signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, frame: Optional[Any]) -> None:
        if signum == signal.SIGINT and self._received and stop_signal_name() == "SIGINT":
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the step
        if signum == signal.SIGINT:
            rank_zero_info("SIGINT received: saving after this step (Ctrl-C again: stop unsaved)")
        record_stop_signal(signum)
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
                f"{stop_signal_name()} received: saving and stopping after step "
                f"{trainer.global_step}"
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
        for signum, handler in self._previous_handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous_handlers = {}

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """A sharded checkpoint (a folder) is written beside its name and moved in whole."""
        if not _saves_folders(trainer.strategy):
            return super()._save_checkpoint(trainer, filepath)
        final = Path(filepath)
        staging = final.with_name(f".{final.name}.partial")
        if trainer.is_global_zero and staging.exists():  # left by a killed save
            shutil.rmtree(staging)
        trainer.strategy.barrier("ResumableCheckpoint.staging")
        super()._save_checkpoint(trainer, str(staging))  # every rank has written when it returns
        if trainer.is_global_zero:
            replace_folder(staging, final)
        trainer.strategy.barrier("ResumableCheckpoint.replace")
        self._last_checkpoint_saved = filepath

    @staticmethod
    def _link_checkpoint(trainer: L.Trainer, filepath: str, linkpath: str) -> None:
        """``save_last: link``: the link is made under a temporary name and renamed over
        ``linkpath`` (Lightning removes ``linkpath`` first: a kill in between left none)."""
        if Path(linkpath).is_dir() or not trainer.is_global_zero:
            return ModelCheckpoint._link_checkpoint(trainer, filepath, linkpath)
        if os.path.abspath(filepath) != os.path.abspath(linkpath):
            folder = os.path.dirname(linkpath) or "."
            temporary = tempfile.mktemp(prefix=f".{os.path.basename(linkpath)}.", dir=folder)
            try:
                os.symlink(os.path.relpath(filepath, folder), temporary)
                os.replace(temporary, linkpath)
            except OSError:
                if os.path.lexists(temporary):
                    os.unlink(temporary)
                return ModelCheckpoint._link_checkpoint(trainer, filepath, linkpath)
        trainer.strategy.barrier()


def _saves_folders(strategy: Any) -> bool:
    """Whether ``strategy`` writes a checkpoint as a folder of shards (FSDP ``sharded``, FSDP2
    with ``save_distributed_checkpoint``)."""
    return getattr(strategy, "_state_dict_type", None) == "sharded" or bool(
        getattr(strategy, "_save_distributed_checkpoint", False)
    )
