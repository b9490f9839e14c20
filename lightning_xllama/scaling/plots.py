"""The fit's figure: one panel per language (``fit.png``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.figure import Figure

from lightning_xllama.scaling.law import ScalingFit


def plot_fits(fit: ScalingFit, path: Union[str, Path]) -> Path:
    """One panel per language: the results, the fitted law and its bootstrap band (PNG, Agg)."""
    names = list(fit.languages)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")  # no pyplot state
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, language in zip(axes, names):
        law = fit.languages[language]
        pairs = np.array(law.pairs)
        smallest = pairs[pairs > 0].min() if np.any(pairs > 0) else 1.0
        largest = 1.5 * max(pairs.max(), smallest)
        grid = np.concatenate([np.linspace(0, smallest, 20), np.geomspace(smallest, largest, 200)])
        estimate = fit.predict(language, grid)
        axis.scatter(pairs, law.scores, s=12, color="black", label="results", zorder=3)
        axis.plot(grid, estimate.value, label=f"{law.model} law")
        if law.bootstrap:
            axis.fill_between(
                grid, estimate.low, estimate.high, alpha=0.25, label=f"{fit.level:.0%} band"
            )
        axis.set_xscale("symlog", linthresh=smallest)
        r2 = "n/a" if law.r2 is None else f"{law.r2:.3f}"
        axis.set(title=f"{language}  (R² {r2})", xlabel="parallel pairs", ylabel=fit.metric)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    axes[0].legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
