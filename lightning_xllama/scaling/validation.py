"""The law judged out of sample: fitted on the smaller sizes, it predicts the largest.

A law with four parameters fits a handful of points well whatever it is worth; the test that
counts is a prediction the fit never saw. :func:`out_of_sample` refits each language without its
largest size (every seed's point there) and compares the prediction with what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from scipy.stats import t as t_distribution

from lightning_xllama.scaling.fit import fit_scaling
from lightning_xllama.scaling.results import Points


@dataclass
class OutOfSample:
    """The largest size of one language, predicted by the law fitted on the others."""

    language: str
    pairs: float
    """The held-out size."""
    fitted_sizes: list[float]
    predicted: float
    low: float
    high: float
    """Prediction interval of the mean score measured at ``pairs`` (``seeds`` runs)."""
    observed: float
    """Mean of the scores measured at ``pairs``."""
    observed_sd: Optional[float]
    """Standard deviation of those scores across seeds (None with one seed)."""
    seeds: int
    model: str = "power"
    """The form of the law fitted on the smaller sizes (or ``flat``)."""

    @property
    def error(self) -> float:
        return self.predicted - self.observed

    @property
    def relative_error(self) -> float:
        return self.error / self.observed if self.observed else math.inf

    @property
    def covered(self) -> bool:
        return self.low <= self.observed <= self.high


def out_of_sample(
    points: Points,
    metric: str,
    level: float = 0.95,
    on_non_increasing: Literal["error", "flat"] = "error",
    form: Literal["power", "stretched_exp", "auto"] = "power",
    ceiling: Optional[float] = None,
) -> dict[str, OutOfSample]:
    """Fit each language without its largest size and predict the mean score measured there.

    The interval adds, in quadrature, the measurement noise of a mean of ``seeds`` runs
    (t quantile times sigma_hat / sqrt(seeds), sigma_hat from the fit's residuals) to the
    profile interval of the curve, so it is an interval for what is measured, not only for the
    law. Needs five distinct sizes per language (four to fit, one to predict) and more than four
    runs below the largest (more seeds or sizes), so the refit leaves an error to measure;
    ``on_non_increasing``, ``form`` and ``ceiling`` are :func:`fit_scaling`'s (with ``auto``,
    the form is chosen on the smaller sizes only).
    """
    found = {}
    for language, (n, y) in points.items():
        sizes = np.unique(n)
        if len(sizes) < 5:
            raise ValueError(
                f"language {language!r}: {len(sizes)} distinct sizes {sizes.astype(int).tolist()}; "
                "out-of-sample validation needs 5 (four to fit the law, the largest to predict)"
            )
        largest, kept = sizes[-1], n < sizes[-1]
        if kept.sum() <= 4:
            raise ValueError(
                f"language {language!r}: {int(kept.sum())} runs below the largest size; the law's "
                "four parameters would fit them exactly, leaving no error to build an interval "
                "from: give more sizes or more seeds per size"
            )
        fit = fit_scaling(
            {language: (n[kept], y[kept])},
            metric,
            level=level,
            on_non_increasing=on_non_increasing,
            form=form,
            ceiling=ceiling,
        )
        law = fit.languages[language]
        estimate = fit.predict(language, float(largest))
        held = y[n == largest]
        dof = int(kept.sum()) - (1 if law.model == "flat" else 4)
        noise = 0.0
        if dof > 0:
            sigma = math.sqrt(float(np.sum(np.square(law.residuals))) / dof)
            noise = t_distribution.ppf((1 + level) / 2, dof) * sigma / math.sqrt(len(held))
        found[language] = OutOfSample(
            language,
            float(largest),
            sizes[:-1].tolist(),
            float(estimate.value),
            float(estimate.value - math.hypot(estimate.value - estimate.low, noise)),
            float(estimate.value + math.hypot(estimate.high - estimate.value, noise)),
            float(held.mean()),
            float(held.std(ddof=1)) if len(held) > 1 else None,
            len(held),
            law.model,
        )
    return found
