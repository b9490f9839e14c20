"""Write the run record (``run.json``, :mod:`lightning_xllama.run_record`) beside the run's logs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.data.report import data_report_text
from lightning_xllama.run_record import (
    CHECKPOINT_KEY,
    RunRecordDict,
    build_run_record,
    now,
    write_run_record,
)


class RunRecord(L.Callback):
    """Write ``run.json`` into the trainer's log dir on rank 0 when ``fit`` starts, rewrite it at
    every checkpoint and when ``fit`` ends, and save the record in each checkpoint (the
    ``export`` command copies it into the exported folder). When ``fit`` starts, also print the
    data report (per stream: read, skipped and where, duplicates, held out, passes an epoch;
    the pad token) through Lightning's rank-zero logging. The CLI adds this callback."""

    def __init__(self):
        self.log_dir: Optional[str] = None
        self.started: Optional[str] = None
        self.record: Optional[RunRecordDict] = None
        self.first_step: Optional[int] = None
        """The optimizer steps done when training started (those of the resumed checkpoint)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast: every rank asks
        self.log_dir = str(Path(log_dir).resolve()) if log_dir is not None else None
        self.started = now()
        record = self.update(trainer, pl_module, "running")
        if record.get("data_report") is not None:
            rank_zero_info(data_report_text(record["data_report"], record.get("pad_token")))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first_step = trainer.global_step

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.update(trainer, pl_module, "running")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.update(trainer, pl_module, "finished")

    def update(
        self, trainer: L.Trainer, pl_module: L.LightningModule, status: str
    ) -> RunRecordDict:
        """The record now, written to the log dir on rank 0."""
        self.record = build_run_record(trainer, pl_module, self.log_dir, self.started, status)
        if trainer.is_global_zero and self.log_dir is not None:
            write_run_record(self.record, self.log_dir)
        return self.record
