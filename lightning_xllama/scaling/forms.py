"""The shapes of the scaling law of translation quality in parallel pairs.

The law, per language, is a ceiling minus a gap that the pairs close::

    S(n) = S_max - A * decay(n / n0; alpha)

    power          decay = (1 + n / n0) ** (-alpha)     (the paper's law)
    stretched_exp  decay = exp(-(n / n0) ** alpha)

``S_max`` is the ceiling, ``A`` the gap between the ceiling and the score with no pairs,
``alpha`` the shape of the returns and ``n0`` the scale in pairs at which they start to
diminish. The power law's gap shrinks by a constant factor per doubling of the pairs, at most;
the stretched exponential's can shrink faster and faster (with ``alpha > 1`` the curve is slow
at first, then steep, so not concave), as when each pair
teaches a share of a finite vocabulary; with ``alpha = 1`` it is the power law's limit for a
large ``alpha`` and ``n0``. A score with a maximum (chrF++ and BLEU: 100) holds ``S_max`` to it
(:data:`METRIC_CEILINGS`): a curve that rises steeply then has to bend below the maximum
instead of aiming at a ceiling the metric cannot reach.

The power form is the textbook ``S_max - A' * (n + n0) ** (-alpha)`` with ``A' = A * n0**alpha``;
this form keeps ``A`` in the metric's own units, which keeps the fit well conditioned.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

ALPHA_BOUNDS = (0.01, 3.0)
"""The range of the shape alpha searched by the fit and its profile intervals."""

Form = Literal["power", "stretched_exp"]
FORMS: tuple[Form, ...] = ("power", "stretched_exp")

METRIC_CEILINGS = {
    "bleu": 100.0,
    "spbleu": 100.0,
    "chrf": 100.0,
    "chrf_pp": 100.0,
    "exact_match": 100.0,
}
"""The maximum of each score the sweeps and callbacks log on a 0-100 scale: the fit's default
bound on ``S_max`` for that metric."""


def decay(form: Form, x, alpha):
    """The share of the gap A still open after ``x = n / n0`` scales of pairs."""
    x = np.asarray(x, dtype=float)
    if form == "power":
        return (1.0 + x) ** (-alpha)
    if form == "stretched_exp":
        return np.exp(-(x**alpha))
    raise ValueError(f"unknown law form {form!r}; expected one of {FORMS}")


def law_curve(form: Form, n, s_max, a, alpha, n0):
    """S(n) of either form, vectorised over ``n`` and the parameters."""
    return s_max - a * decay(form, np.asarray(n, dtype=float) / n0, alpha)


def power_law(n, s_max, a, alpha, n0):
    """S(n) = S_max - A (1 + n/n0)^-alpha, vectorised over ``n`` and the parameters."""
    return law_curve("power", n, s_max, a, alpha, n0)


def stretched_exp_law(n, s_max, a, alpha, n0):
    """S(n) = S_max - A exp(-(n/n0)^alpha), vectorised over ``n`` and the parameters."""
    return law_curve("stretched_exp", n, s_max, a, alpha, n0)


def inverse_law(form: Form, score: float, s_max: float, a: float, alpha: float, n0: float) -> float:
    """Pairs at which the law reaches ``score``: 0 when no pairs are needed, inf when never."""
    if score >= s_max:
        return math.inf
    if score <= s_max - a:
        return 0.0
    left = (s_max - score) / a
    if form == "power":
        return n0 * (left ** (-1.0 / alpha) - 1.0)
    return n0 * (-math.log(left)) ** (1.0 / alpha)


def inverse_power_law(score: float, s_max: float, a: float, alpha: float, n0: float) -> float:
    """Pairs at which the power law reaches ``score`` (see :func:`inverse_law`)."""
    return inverse_law("power", score, s_max, a, alpha, n0)
