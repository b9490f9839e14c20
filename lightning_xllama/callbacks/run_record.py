"""Write the run record (``run.json``, :mod:`lightning_xllama.runtime.run_record`) beside the run's logs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_xllama.data.report import data_report_text
from lightning_xllama.runtime.run_record import (
    CHECKPOINT_KEY,
    RunRecordDict,
    build_run_record,
    now,
    write_run_record,
)
from lightning_xllama.training.divergence import TrainingDiverged


class RunRecord(L.Callback):
    """Write ``run.json`` into the trainer's log dir on rank 0 when ``fit`` starts, rewrite it at
    every checkpoint and when ``fit`` ends, and save the record in each checkpoint (the
    ``export`` command copies it into the exported folder). When ``fit`` starts, also print the
    data report (per stream: read, skipped and where, duplicates, held out, passes an epoch;
    the pad token) through Lightning's rank-zero logging. The CLI adds this callback.

    Every way ``fit`` ends is recorded: ``finished``; ``stopped`` (SIGTERM or Ctrl-C, with
    ``last_saved_step``); ``diverged`` (a non-finite loss or gradient norm, with ``error``);
    ``failed`` (any other exception, with ``error``, its one line). Only a killed process (SIGKILL)
    leaves ``running``."""

    def __init__(self):
        self.log_dir: Optional[str] = None
        self.started: Optional[str] = None
        self.record: Optional[RunRecordDict] = None
        self.first_step: Optional[int] = None
        """The optimizer steps done when training started (those of the resumed checkpoint)."""
        self.last_saved_step: Optional[int] = None
        """The optimizer steps in the latest checkpoint this run saved."""
        self.ending: Optional[dict] = None
        """How ``fit`` ended when it ended by an exception (status and its fields)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast: every rank asks
        self.log_dir = str(Path(log_dir).resolve()) if log_dir is not None else None
        self.started = now()
        self.last_saved_step, self.ending = None, None
        record = self.update(trainer, pl_module, "running")
        if record.get("data_report") is not None:
            rank_zero_info(data_report_text(record["data_report"], record.get("pad_token")))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first_step = trainer.global_step

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        """Record the checkpoint's step; a checkpoint saved on the way out (SIGTERM) keeps the
        record's final status (the checkpoint callbacks run after this one)."""
        self.last_saved_step = trainer.global_step
        status = self.ending["status"] if self.ending is not None else "running"
        checkpoint[CHECKPOINT_KEY] = self.update(trainer, pl_module, status)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.update(trainer, pl_module, "finished")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """``stopped``, ``diverged`` or ``failed``, with the exception's one line; nothing when
        ``fit`` never started (no log dir was chosen, no ``run.json`` was written)."""
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.ending = {"status": "stopped"}
        elif isinstance(exception, TrainingDiverged):
            self.ending = {"status": "diverged", "error": str(exception)}
        else:
            self.ending = {"status": "failed", "error": error_line(exception)}
        if self.log_dir is None:
            return
        try:
            self.update(trainer, pl_module, self.ending["status"])
        except Exception as err:  # the run's state may be what failed: keep the last record
            rank_zero_warn(f"run.json: the record could not be rebuilt ({error_line(err)})")
            if self.record is not None:
                self.record.update(status=self.ending["status"], updated=now())
                self._write(trainer)

    def update(
        self, trainer: L.Trainer, pl_module: L.LightningModule, status: str
    ) -> RunRecordDict:
        """The record now, written to the log dir on rank 0."""
        self.record = build_run_record(trainer, pl_module, self.log_dir, self.started, status)
        self._write(trainer)
        return self.record

    def _write(self, trainer: L.Trainer) -> None:
        """Add how the fit ended, if it did, and write the record on rank 0."""
        if self.ending is not None:
            self.record.update(self.ending)
            if self.ending["status"] == "stopped":
                saved = [s for s in (self.last_saved_step, self.first_step) if s]
                self.record["last_saved_step"] = max(saved) if saved else None
        if trainer.is_global_zero and self.log_dir is not None:
            write_run_record(self.record, self.log_dir)


def error_line(exception: BaseException) -> str:
    """The exception's type and the first line of its message."""
    lines = str(exception).strip().splitlines()
    return f"{type(exception).__name__}: {lines[0]}" if lines else type(exception).__name__
