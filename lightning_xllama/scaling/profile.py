"""Profile-likelihood intervals for one language's law: its parameters and its predictions.

The law ``S(n) = S_max - A * g(n)``, ``g = decay(n/n0; alpha)`` of either form
(:mod:`~lightning_xllama.scaling.forms`), is linear in (S_max, A) once (alpha, n0) are fixed, so the least-squares error of the best (S_max, A) has a closed form on
every cell of an (alpha, log n0) grid, and so does that error as a quadratic in S_max, in A or
in any prediction ``S(n)`` with the other linear parameter profiled out. An interval is the set
of values whose profiled error stays under the F threshold of nonlinear regression::

    RSS(value) <= RSS_min * (1 + F(level; 1, m - 4) / (m - 4))

(Bates and Watts). The F quantile accounts for the noise being estimated from the same few
points, which is why these intervals hold their level where bootstrap percentiles fall short
(``benchmarks/scaling_coverage.py``). An interval that reaches the edge of the grid (alpha in
ALPHA_BOUNDS, n0 from 1 pair to 1000x the largest size) reports that edge: the data do not
bound the parameter there. S_max is held to the fit's own range (:func:`s_max_bounds`, at most
the metric's maximum), in the profile of every quantity, so that a law that has not saturated
gets the fit's ceiling on S_max and A rather than intervals without end.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import f as f_distribution

from lightning_xllama.scaling.forms import Form, decay

GRID = 121
"""Grid points per axis, in each of the two passes (a coarse one, then one zoomed in)."""


def s_max_bounds(y, ceiling: float = math.inf) -> tuple[float, float]:
    """The range of S_max the fit searches: from the lowest score to the highest plus
    max(|highest|, 2 x span) (chrF++ 30 to 60 allows a ceiling up to 90), and no higher than
    ``ceiling``, the metric's maximum."""
    high, low = float(np.max(y)), float(np.min(y))
    span = max(high - low, 1e-9 * max(1.0, abs(high)))
    return low, min(high + max(abs(high), 2 * span), ceiling)


def profile_threshold(rss_min: float, points: int, level: float) -> float:
    """The largest profiled squared error inside a ``level`` interval (Bates and Watts)."""
    dof = points - 4
    if dof <= 0:
        raise ValueError(f"a profile interval needs more than 4 points, got {points}")
    return rss_min * (1 + f_distribution.ppf(level, 1, dof) / dof)


class Profile:
    """The law's squared error on an (alpha, log10 n0) grid, zoomed onto the plausible region.

    Args:
        n, y: The language's pairs and scores (every seed's point).
        alpha_bounds: The range of alpha searched.
        level: The coverage of the intervals.
        form: The law's form.
        ceiling: The metric's maximum, which S_max may not pass.
    """

    def __init__(
        self,
        n,
        y,
        alpha_bounds: tuple[float, float],
        level: float = 0.95,
        form: Form = "power",
        ceiling: float = math.inf,
    ):
        self.n, self.y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
        if self.n.shape != self.y.shape or self.n.ndim != 1:
            raise ValueError(
                f"pairs and scores must be 1-d of one length: {self.n.shape}, {self.y.shape}"
            )
        self.bounds = s_max_bounds(self.y, ceiling)
        self.level, self.form = level, form
        self.log_n0_bounds = (0.0, math.log10(max(self.n.max(), 1.0)) + 3)
        self.alpha_bounds = alpha_bounds
        self._evaluate(np.geomspace(*alpha_bounds, GRID), np.linspace(*self.log_n0_bounds, GRID))
        inside = self.rss <= self.threshold
        # zoom onto the plausible cells' bounding box (one coarse step of margin) and redo
        rows, columns = np.nonzero(inside)
        alphas, log_n0s = self.alpha, self.log_n0
        self._evaluate(
            np.geomspace(
                alphas[max(rows.min() - 1, 0)], alphas[min(rows.max() + 1, GRID - 1)], GRID
            ),
            np.linspace(
                log_n0s[max(columns.min() - 1, 0)], log_n0s[min(columns.max() + 1, GRID - 1)], GRID
            ),
        )

    def _evaluate(self, alpha: np.ndarray, log_n0: np.ndarray) -> None:
        """Closed-form least squares of (S_max, A) on every grid cell, S_max held to its range."""
        self.alpha, self.log_n0 = alpha, log_n0
        g = decay(self.form, self.n / 10.0 ** log_n0[None, :, None], alpha[:, None, None])
        m, y = len(self.n), self.y
        sg, sgg, sy, sgy = g.sum(-1), (g * g).sum(-1), y.sum(), (g * y).sum(-1)
        det = m * sgg - sg**2
        # g not constant over the sizes (S_max and A separable), and not ~0 at all of them (a
        # gap already closed at every size leaves A unidentified; its 1/det would overflow)
        ok = (det > 1e-12 * m * sgg) & (sgg > 1e-12 * m)
        det = np.where(ok, det, np.nan)
        self.s_max = (sgg * sy - sg * sgy) / det
        self.a = (sg * sy - m * sgy) / det
        # X^T X of the design [1, -g] and its inverse
        self.m_ss, self.m_sa, self.m_aa = m, -sg, sgg
        self.v_ss, self.v_aa, self.v_sa = sgg / det, m / det, sg / det
        free = np.maximum((y**2).sum() - self.s_max * sy + self.a * sgy, 0.0)
        low, high = self.bounds
        clipped = np.clip(self.s_max, low, high)
        self.free_rss = np.where(ok & (self.a > 0), free, np.inf)
        self.rss = self.free_rss + (clipped - self.s_max) ** 2 / self.v_ss  # at the nearest bound
        self.rss_min = float(np.nanmin(self.rss))
        self.threshold = profile_threshold(self.rss_min, m, self.level)

    def interval(self, parameter: str) -> tuple[float, float]:
        """The ``level`` profile interval of s_max, a, alpha or n0."""
        inside = self.rss <= self.threshold
        if parameter in ("alpha", "n0"):
            axis = self.alpha if parameter == "alpha" else 10.0**self.log_n0
            kept = axis[inside.any(axis=1 if parameter == "alpha" else 0)]
            return float(kept.min()), float(kept.max())
        if parameter == "s_max":
            low, high = self._linear(np.ones(1), np.zeros(1))
            return float(low[0]), float(high[0])
        if parameter == "a":
            low, high = self._linear(np.zeros(1), np.ones(1))
            return max(float(low[0]), 0.0), float(high[0])
        raise ValueError(f"unknown parameter {parameter!r}; expected s_max, a, alpha or n0")

    def predict(self, pairs, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``level`` profile interval of S(n) at each of ``pairs``: (low, high)."""
        rows, columns = np.nonzero(self.rss <= self.threshold)
        alpha, n0 = self.alpha[rows], 10.0 ** self.log_n0[columns]
        pairs = np.atleast_1d(np.asarray(pairs, dtype=float))
        lows, highs = [], []
        for start in range(0, len(pairs), chunk):
            g = decay(self.form, pairs[start : start + chunk, None] / n0, alpha)
            low, high = self._linear(np.ones(1), -g)
            lows.append(low)
            highs.append(high)
        return np.concatenate(lows), np.concatenate(highs)

    def _linear(self, c_s: np.ndarray, c_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Range of c_s * S_max + c_a * A over the plausible set: per plausible cell, an
        ellipse in (S_max, A) cut to S_max's range; united over the cells. ``c_s`` and ``c_a``
        are (functionals, plausible cells) or broadcast to it; returns (low, high) per functional.
        """
        inside = self.rss <= self.threshold
        s_hat, a_hat = self.s_max[inside], self.a[inside]
        v_ss, v_sa, v_aa = self.v_ss[inside], self.v_sa[inside], self.v_aa[inside]
        c_s, c_a = np.broadcast_arrays(np.atleast_2d(c_s), np.atleast_2d(c_a))
        r2 = np.maximum(self.threshold - self.free_rss[inside], 0.0)
        w_s, w_a = v_ss * c_s + v_sa * c_a, v_sa * c_s + v_aa * c_a
        spread = c_s * w_s + c_a * w_a  # c^T V c
        step = np.sqrt(r2 / np.maximum(spread, 1e-300))
        centre = c_s * s_hat + c_a * a_hat
        low, high = self.bounds
        extremes = []
        for sign in (1.0, -1.0):
            value = centre + sign * step * spread
            s_at = s_hat + sign * step * w_s
            edge = self._edges(c_s, c_a, s_hat, a_hat, r2, inside, sign)
            extremes.append(np.where((s_at >= low) & (s_at <= high), value, edge))
        return np.nanmin(extremes[1], axis=-1), np.nanmax(extremes[0], axis=-1)

    def _edges(self, c_s, c_a, s_hat, a_hat, r2, inside, sign) -> np.ndarray:
        """The best (sign +1: highest) value of the functional on the lines S_max = low and
        S_max = high inside each cell's ellipse (NaN where a line misses it)."""
        m_sa, m_aa = self.m_sa[inside], self.m_aa[inside]
        found = np.full(np.broadcast_shapes(c_s.shape, s_hat.shape), np.nan)
        for edge in self.bounds:
            d = edge - s_hat
            disc = (m_sa * d) ** 2 - m_aa * (self.m_ss * d**2 - r2)
            root = np.sqrt(np.where(disc >= 0, disc, np.nan))
            for a in ((-m_sa * d - root) / m_aa, (-m_sa * d + root) / m_aa):
                found = np.fmax(found, sign * (c_s * edge + c_a * (a_hat + a)))
        return sign * found
