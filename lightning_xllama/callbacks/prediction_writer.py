"""Write ``predict`` outputs as JSONL, one line per input, in input order."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_xllama.runtime import distributed


class JsonlPredictionWriter(BasePredictionWriter):
    """Gathers every rank's predictions and writes them once, ordered by input id.

    Args:
        output_file: the JSONL file to write.
    """

    def __init__(self, output_file: str):
        super().__init__(write_interval="epoch")
        self.output_file = output_file

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        records = [record for batch in predictions for record in batch]
        records = [r for part in distributed.gather_object(records) for r in part]
        if not trainer.is_global_zero:
            return
        unique = {
            r["id"]: r for r in records
        }  # the distributed sampler repeats a few to even out ranks
        path = Path(self.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for key in sorted(unique):
                handle.write(json.dumps(unique[key], ensure_ascii=False) + "\n")
        print(f"wrote {len(unique)} predictions to {path}")
