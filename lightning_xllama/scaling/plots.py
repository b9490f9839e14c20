"""The fit's figure: one panel per language (``fit.png``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from lightning_xllama.scaling.law import ScalingFit
from lightning_xllama.scaling.results import seed_spread

MAX_DECADE_LABELS = 6
"""Most decade labels on a panel's x axis before every other one (or fewer) is shown."""


def plot_fits(fit: ScalingFit, path: Union[str, Path]) -> Path:
    """Write the figure of :func:`fit_figure` as a PNG."""
    path = Path(path)
    fit_figure(fit).savefig(path, dpi=110)
    return path


def fit_figure(fit: ScalingFit) -> Figure:
    """One panel per language: the runs (with each size's mean and seed spread when a size was
    run several times), the fitted law and its band (Agg canvas)."""
    names = list(fit.languages)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")  # no pyplot state
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, language in zip(axes, names):
        law = fit.languages[language]
        pairs = np.array(law.pairs)
        smallest = pairs[pairs > 0].min() if np.any(pairs > 0) else 1.0
        largest = 1.5 * max(pairs.max(), smallest)
        grid = np.concatenate([np.linspace(0, smallest, 20), np.geomspace(smallest, largest, 200)])
        estimate = fit.predict(language, grid)
        sizes, means, sd, runs = seed_spread(pairs, np.array(law.scores))
        several = runs.max() > 1
        axis.scatter(
            pairs,
            law.scores,
            s=8 if several else 12,
            color="black",
            alpha=0.35 if several else 1,
            label="runs" if several else "results",
            zorder=3,
        )
        if several:
            axis.errorbar(
                sizes,
                means,
                yerr=np.nan_to_num(sd),
                fmt="o",
                color="black",
                ms=4,
                capsize=3,
                label="mean ± sd over seeds",
                zorder=4,
            )
        axis.plot(grid, estimate.value, label=f"{law.model} law")
        if law.intervals or law.bootstrap:
            axis.fill_between(
                grid,
                estimate.low,
                estimate.high,
                alpha=0.25,
                label=f"{fit.level:.0%} {'profile' if law.intervals else 'bootstrap'} band",
            )
        _symlog_pairs_axis(axis, smallest, largest)
        # a band can run far off where the data do not bound the law (near 0 pairs): keep the
        # points and the curve in view rather than the band's extremes
        shown = np.concatenate([law.scores, np.atleast_1d(estimate.value)])
        margin = 0.5 * max(np.ptp(shown), 1.0)
        axis.set_ylim(shown.min() - margin, shown.max() + margin)
        r2 = "n/a" if law.r2 is None else f"{law.r2:.3f}"
        axis.set(title=f"{language}  (R² {r2})", xlabel="parallel pairs", ylabel=fit.metric)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    axes[0].legend(fontsize="small")
    return figure


def _symlog_pairs_axis(axis, smallest: float, largest: float) -> None:
    """A symlog x axis labelled at 0 and whole decades only.

    The linear part ends at the decade at or below the smallest size, so the first decade label
    sits a full decade's width from the 0 label; the default ticks put decades inside the
    linear part, where their labels run into the 0.
    """
    first = math.floor(math.log10(smallest))
    last = max(math.floor(math.log10(largest)), first)
    stride = math.ceil((last - first + 1) / MAX_DECADE_LABELS)
    axis.set_xscale("symlog", linthresh=10.0**first)
    axis.xaxis.set_major_locator(
        FixedLocator([0.0, *(10.0**k for k in range(first, last + 1, stride))])
    )
    axis.xaxis.set_minor_locator(NullLocator())
