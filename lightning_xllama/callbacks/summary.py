"""A table of every validation metric at its first and its last measurement, and of the test
metrics after ``test``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class MetricsSummary(L.Callback):
    """Records ``val/`` metrics after each validation pass (and any measured before training)
    and prints first against last when ``fit`` ends; also written to ``{log_dir}/summary.json``.
    After ``test``, prints the ``test/`` metrics (:func:`test_table`) and writes them to
    ``{log_dir}/test_summary.json``.

    Args:
        prefix: which logged metrics to follow.
        exclude: leave out metrics whose name contains one of these (per-layer probe curves).
    """

    def __init__(self, prefix: str = "val/", exclude: tuple[str, ...] = ("/layer",)):
        self.prefix, self.exclude = prefix, tuple(exclude)
        self.first: dict[str, tuple[int, float]] = {}
        self.last: dict[str, tuple[int, float]] = {}

    def _record(self, trainer: L.Trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(self.prefix) and not any(part in key for part in self.exclude):
                point = (trainer.global_step, float(value))
                self.first.setdefault(key, point)
                self.last[key] = point

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0 and batch_idx == 0:  # metrics published by on_train_start hooks
            self._record(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer)

    def table(self) -> str:
        rows = [("metric", "first (step)", "last (step)", "change")]
        for key in sorted(self.first):
            (s0, v0), (s1, v1) = self.first[key], self.last[key]
            rows.append((key, f"{v0:.2f} ({s0})", f"{v1:.2f} ({s1})", f"{v1 - v0:+.2f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # every rank must ask: it is broadcast from rank 0
        if not trainer.is_global_zero or not self.first:
            return
        print("\nValidation metrics, first against last measurement:\n" + self.table() + "\n")
        if log_dir:
            summary = {k: {"first": self.first[k], "last": self.last[k]} for k in self.first}
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "summary.json").write_text(json.dumps(summary, indent=1))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # every rank must ask: it is broadcast from rank 0
        metrics = test_metrics(trainer, self.exclude)
        if not trainer.is_global_zero or not metrics:
            return
        print("\n" + test_table(metrics) + "\n")
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "test_summary.json").write_text(json.dumps(metrics, indent=1))


def test_metrics(trainer: L.Trainer, exclude: tuple[str, ...] = ("/layer",)) -> dict[str, float]:
    """The ``test/`` metrics a test pass logged, by name, without those containing ``exclude``."""
    return {
        key: float(value)
        for key, value in sorted(trainer.callback_metrics.items())
        if key.startswith("test/") and value.numel() == 1 and not any(p in key for p in exclude)
    }


def test_table(metrics: dict[str, float]) -> str:
    """The test metrics as a two-column table (per-layer probe curves are in the logs)."""
    rows = [("metric", "value")] + [(key, f"{value:.4g}") for key, value in metrics.items()]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key.ljust(width)}  {value}" for key, value in rows]
    lines.insert(1, "-" * width + "  " + "-" * 6)
    return "Test metrics (per-layer probe curves: in the logger's files):\n" + "\n".join(lines)
