"""A table of every validation metric at its first and its last measurement, a picture of the
curves (``curves.png``), and a table of the test metrics after ``test``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from lightning_xllama.evaluation.plots import LOSS_KEYS, Points, plot_curves, read_metrics_csv


class MetricsSummary(L.Callback):
    """Records ``val/`` metrics after each validation pass (and any measured before training)
    and prints first against last when ``fit`` ends; also written to ``{log_dir}/summary.json``.
    After ``test``, prints the ``test/`` metrics (:func:`test_table`) and writes them to
    ``{log_dir}/test_summary.json``.

    With ``curves``, ``fit`` ends by drawing ``curves.png`` in the logger's folder (beside a CSV
    logger's ``metrics.csv``): train and validation loss in one panel, and a panel per
    evaluation's headline metric (each evaluation callback's ``progress_bar_metric``, per set),
    against the step. The points are read from ``metrics.csv`` when a CSV logger writes one,
    else they are the ones this callback saw (train loss every ``log_every_n_steps`` steps).

    Args:
        prefix: which logged metrics to follow.
        exclude: leave out metrics whose name contains one of these (per-layer probe curves).
        curves: draw ``curves.png`` when ``fit`` ends.
    """

    def __init__(
        self, prefix: str = "val/", exclude: tuple[str, ...] = ("/layer",), curves: bool = True
    ):
        self.prefix, self.exclude, self.curves = prefix, tuple(exclude), curves
        self.first: dict[str, tuple[int, float]] = {}
        self.last: dict[str, tuple[int, float]] = {}
        self.seen: dict[str, Points] = {}
        """Every point recorded, for curves when no ``metrics.csv`` is written."""
        self.curve_titles: list[str] = []
        """The panels of the last ``curves.png`` drawn."""

    def _record(self, trainer: L.Trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(self.prefix) and not any(part in key for part in self.exclude):
                point = (trainer.global_step, float(value))
                self.first.setdefault(key, point)
                self.last[key] = point
                self.seen.setdefault(key, []).append(point)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """The train loss at each logging step (reading it waits for the device: not every step)."""
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            points = self.seen.setdefault("train/loss", [])
            if not points or points[-1][0] != trainer.global_step:
                points.append((trainer.global_step, float(loss)))

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
        if not trainer.is_global_zero:
            return
        if self.curves and log_dir:
            self.write_curves(trainer, log_dir)
        if not self.first:
            return
        print("\nValidation metrics, first against last measurement:\n" + self.table() + "\n")
        if log_dir:
            summary = {k: {"first": self.first[k], "last": self.last[k]} for k in self.first}
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "summary.json").write_text(json.dumps(summary, indent=1))

    def headlines(self, trainer: L.Trainer) -> list[str]:
        """``val/{name}/{set}/{metric}`` of each evaluation callback's ``progress_bar_metric``,
        in the callbacks' order."""
        found = []
        for callback in trainer.callbacks:
            metric, name = (
                getattr(callback, "progress_bar_metric", None),
                getattr(callback, "name", None),
            )
            if metric and name:
                for key in self.first:
                    parts = key.split("/")
                    if len(parts) == 4 and parts[1] == name and parts[3] == metric:
                        found.append(key)
        return found

    def write_curves(self, trainer: L.Trainer, log_dir: str) -> Path | None:
        """``curves.png`` in the CSV logger's folder (else ``log_dir``); None without points."""
        headlines = self.headlines(trainer)
        points = self.seen
        folder = Path(log_dir)
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_logger is not None:
            csv_logger.save()  # metrics still buffered are written now, not at teardown
            folder = Path(csv_logger.log_dir)
            metrics_file = folder / "metrics.csv"
            if metrics_file.is_file():
                points = read_metrics_csv(metrics_file, [*LOSS_KEYS, *headlines])
        if not any(points.get(key) for key in [*LOSS_KEYS, *headlines]):
            return None
        path = folder / "curves.png"
        self.curve_titles = plot_curves(points, headlines, path)
        print(f"training curves drawn in {path} ({', '.join(self.curve_titles)})")
        return path

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
