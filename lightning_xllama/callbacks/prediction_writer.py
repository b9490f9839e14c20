"""Write ``predict`` outputs as JSONL, one line per input, in input order."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional, TextIO

from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_xllama.runtime import distributed
from lightning_xllama.runtime.progress import LogProgress


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes each batch's predictions as it is generated, and every rank's, ordered by input
    id, when the pass ends.

    While ``predict`` runs, each batch is appended (and flushed) to ``{stem}.partial.jsonl``
    beside ``output_file`` (``{stem}.rank{N}.partial.jsonl`` per rank on several), so a stopped
    run keeps what it generated; the partial file is removed once ``output_file`` is written.
    When stderr is not a terminal (a log file, a batch job), the batches done, the rate and the
    time left are printed as a few plain lines (:class:`LogProgress`); on a terminal Lightning's
    bar shows them.

    Args:
        output_file: the JSONL file to write.
    """

    def __init__(self, output_file: str):
        super().__init__(write_interval="batch")
        self.output_file = output_file
        self.records: list[dict] = []
        self.partial: Optional[TextIO] = None
        self.log_progress: Optional[LogProgress] = None

    def partial_path(self) -> Path:
        """Where this rank appends its batches while ``predict`` runs."""
        path = Path(self.output_file)
        rank = f".rank{distributed.rank()}" if distributed.world_size() > 1 else ""
        return path.with_name(f"{path.stem}{rank}.partial.jsonl")

    def on_predict_start(self, trainer, pl_module) -> None:
        self.records = []
        path = self.partial_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = path.open("w", encoding="utf-8")
        if trainer.is_global_zero and not getattr(sys.stderr, "isatty", lambda: False)():
            total = sum(int(n) for n in trainer.num_predict_batches if n != float("inf"))
            self.log_progress = LogProgress(desc="predict", total=total or None, unit="batches")

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        self.records.extend(prediction)
        for record in prediction:
            self.partial.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.partial.flush()
        os.fsync(self.partial.fileno())
        if self.log_progress is not None:
            self.log_progress.update(1)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A stopped or failed run keeps its partial file (every batch already flushed)."""
        if self.partial is not None:
            self.partial.close()

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        if self.log_progress is not None:
            self.log_progress.close()
            self.log_progress = None
        self.partial.close()
        records = [r for part in distributed.gather_object(self.records) for r in part]
        if not trainer.is_global_zero:
            self.partial_path().unlink()
            return
        unique = {
            r["id"]: r for r in records
        }  # the distributed sampler repeats a few to even out ranks
        path = Path(self.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for key in sorted(unique):
                handle.write(json.dumps(unique[key], ensure_ascii=False) + "\n")
        self.partial_path().unlink()
        print(f"wrote {len(unique)} predictions to {path}")
