"""Pictures of a run and of an evaluation: the training curves and the paper's table as bars.

Drawn on a bare matplotlib ``Figure`` (Agg, no pyplot): no GUI backend, no global state.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable

LOSS_KEYS = ("train/loss", "val/loss")
"""The curves of the first panel of :func:`plot_curves`."""

Points = list[tuple[int, float]]


def read_metrics_csv(path: str | Path, keys: Iterable[str]) -> dict[str, Points]:
    """``(step, value)`` points of each of ``keys`` found in a CSV logger's ``metrics.csv`` (one
    column per metric, a row per logging call, empty cells for metrics not logged then)."""
    wanted = set(keys)
    points: dict[str, Points] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key in wanted and value not in (None, ""):
                    points.setdefault(key, []).append((int(float(step)), float(value)))
    return points


def plot_curves(points: dict[str, Points], headlines: list[str], path: str | Path) -> list[str]:
    """Save the train and validation loss (one panel) and each headline metric (a panel each)
    against the optimizer step at ``path``; the panels' titles, in order. A metric with no points
    gets no panel."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [("loss", [k for k in LOSS_KEYS if points.get(k)])]
    panels += [(key.removeprefix("val/"), [key]) for key in headlines if points.get(key)]
    panels = [(title, keys) for title, keys in panels if keys]
    columns = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(5 * columns, 3.6 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, (title, keys) in zip(grid.flat, panels):
        for key in keys:
            steps, values = zip(*sorted(points[key]))
            marker = "o" if len(steps) < 30 else None
            axes.plot(steps, values, marker=marker, label=key)
        axes.set(title=title, xlabel="step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(keys) > 1:
            axes.legend()
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return [title for title, _ in panels]


def plot_paper_table(table: dict, path: str | Path) -> Path:
    """Save the paper's table (``paper_table``: languages x columns) as grouped bars at ``path``:
    one group per column, one bar per language, the value written on each bar."""
    from matplotlib.figure import Figure

    columns, rows = table["columns"], table["rows"]
    width = 0.8 / max(1, len(rows))
    figure = Figure(figsize=(max(6.0, 1.2 * len(columns) * max(1, len(rows)) ** 0.5 + 2), 4.5))
    axes = figure.subplots()
    for index, row in enumerate(rows):
        xs = [i + (index - (len(rows) - 1) / 2) * width for i, c in enumerate(columns) if c in row]
        values = [row[c] for c in columns if c in row]
        bars = axes.bar(xs, values, width, label=row["language"])
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set(
        title=f"The paper's table: {Path(str(table['model'])).name or table['model']}",
        ylabel="score (COMET, BLEURT as the models give them)",
    )
    axes.legend(title="language")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path
