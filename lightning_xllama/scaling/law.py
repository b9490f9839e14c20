"""The fitted scaling law (``fit.json``): per language its parameters, data and intervals.

The law's shapes are in :mod:`lightning_xllama.scaling.forms`. The shared-exponent variant
ties ``A`` and ``alpha`` across languages and keeps a per-language ceiling and similarity
factor ``k_l = 1 / n0_l``: ``S_l(n) = S_max_l - A * decay(k_l * n; alpha)``; a language close
to English (large ``k_l``) gets more out of each pair. It needs three data sizes per language
instead of four: with only two, the curve through them is exact for two different
(S_max_l, k_l), so the data cannot choose. (It has 2L + 2 parameters, which three sizes per
language also cover.)
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Optional, Union

import numpy as np

from lightning_xllama.scaling.forms import ALPHA_BOUNDS, Form, inverse_law, law_curve
from lightning_xllama.scaling.profile import Profile


class Estimate(NamedTuple):
    """A point estimate with its profile or bootstrap interval (NaN bounds when it has neither)."""

    value: float
    low: float
    high: float


@dataclass
class LanguageFit:
    """The fitted law of one language, with the data and resamples needed to judge and reuse it."""

    language: str
    metric: str
    s_max: float
    a: float
    alpha: float
    n0: float
    model: Literal["power", "stretched_exp", "flat"] = "power"
    """The law's form (:data:`FORMS`), or ``flat``: the scores did not grow with the pairs and a
    constant ``s_max`` stands in (A = 0)."""
    stderr: dict[str, Optional[float]] = field(default_factory=dict)
    """Standard errors from the fit's covariance; None where it could not be estimated."""
    r2: Optional[float] = None
    """Coefficient of determination on this language's points (None for constant scores)."""
    pairs: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    """Observed minus fitted score, point by point."""
    bootstrap: list[list[float]] = field(default_factory=list)
    """(s_max, a, alpha, n0) refitted on each bootstrap resample."""
    intervals: dict[str, list[float]] = field(default_factory=dict)
    """Profile-likelihood [low, high] per parameter; when present, predictions and pairs needed
    take their intervals from the profile too (see :mod:`lightning_xllama.scaling.profile`)."""

    @property
    def params(self) -> tuple[float, float, float, float]:
        return self.s_max, self.a, self.alpha, self.n0

    @property
    def form(self) -> Form:
        """The form its curve is computed with (a flat law is either form with A = 0)."""
        return "stretched_exp" if self.model == "stretched_exp" else "power"

    @property
    def n_range(self) -> tuple[float, float]:
        return min(self.pairs), max(self.pairs)

    @property
    def concave(self) -> bool:
        """Whether each extra pair gains no more than the one before: the power law always,
        the stretched exponential for alpha <= 1 (above, it starts slow and speeds up)."""
        return self.model != "stretched_exp" or self.alpha <= 1.0

    def curve(self, n):
        """The fitted score after ``n`` pairs (scalar or array)."""
        return law_curve(self.form, n, *self.params)


@dataclass
class ScalingFit:
    """Fitted laws for every language of one metric; saved as ``fit.json``."""

    metric: str
    languages: dict[str, LanguageFit]
    shared_exponent: bool = False
    level: float = 0.95
    """Coverage of the intervals (profile or bootstrap)."""
    ceiling: Optional[float] = None
    """The bound the fit held ``S_max`` to (the metric's maximum); None: the data's range only."""

    def __post_init__(self):
        if self.ceiling is not None and math.isinf(self.ceiling):
            self.ceiling = None  # no bound; fit.json stays standard JSON (no Infinity)

    def law(self, language: str) -> LanguageFit:
        if language not in self.languages:
            raise ValueError(
                f"no fitted law for language {language!r}; fitted: {sorted(self.languages)}"
            )
        return self.languages[language]

    def predict(self, language: str, n) -> Estimate:
        """Predicted score after ``n`` pairs (scalar or array), with its profile or bootstrap
        interval (pointwise)."""
        law = self.law(language)
        value = law.curve(n)
        if law.intervals:
            low, high = self._profile(law).predict(n)
            shape = np.shape(value)
            return Estimate(_plain(value), _plain(low.reshape(shape)), _plain(high.reshape(shape)))
        if not law.bootstrap:
            unknown = _plain(np.full_like(value, np.nan))
            return Estimate(_plain(value), unknown, unknown)
        curves = law_curve(
            law.form, np.asarray(n, dtype=float)[..., None], *np.array(law.bootstrap).T
        )
        low, high = np.quantile(curves, self._quantiles, axis=-1)
        return Estimate(_plain(value), _plain(low), _plain(high))

    def pairs_needed(self, language: str, target: float) -> Estimate:
        """Pairs needed to reach ``target``; the high end is inf when the interval never does."""
        law = self.law(language)
        if target >= law.s_max:
            raise ValueError(
                f"{self.metric} {target} is unreachable for {language!r}: "
                f"the fitted ceiling S_max is {law.s_max:.4g}"
            )
        value = inverse_law(law.form, target, *law.params)
        if law.intervals:
            return Estimate(value, *self._profile_pairs_needed(law, target))
        if not law.bootstrap:
            return Estimate(value, math.nan, math.nan)
        needed = [inverse_law(law.form, target, *params) for params in law.bootstrap]
        # "nearest": interpolating between inf values would give NaN
        low, high = np.quantile(needed, self._quantiles, method="nearest")
        return Estimate(value, float(low), float(high))

    def _profile(self, law: LanguageFit) -> Profile:
        return cached_profile(
            tuple(law.pairs), tuple(law.scores), self.level, law.form, self.ceiling
        )

    def _profile_pairs_needed(self, law: LanguageFit, target: float) -> tuple[float, float]:
        """Where the band's high end first reaches ``target`` and where its low end last stays
        below it, on a grid up to 1000x the largest size (inf beyond it)."""
        grid = np.concatenate([[0.0], np.geomspace(1.0, 1e3 * max(max(law.pairs), 1.0), 600)])
        low, high = self._profile(law).predict(grid)
        reached, short = grid[high >= target], grid[low < target]
        first = float(reached[0]) if len(reached) else math.inf
        if not len(short):
            return first, 0.0
        return first, math.inf if short[-1] == grid[-1] else float(short[-1])

    @property
    def _quantiles(self) -> tuple[float, float]:
        return (1 - self.level) / 2, (1 + self.level) / 2

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        document = {"kind": "scaling_fit", **asdict(self)}
        path.write_text(json.dumps(document, indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ScalingFit":
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.pop("kind", None) != "scaling_fit":
            raise ValueError(
                f"{path}: not a scaling fit (expected a JSON object with kind: scaling_fit)"
            )
        try:
            data["languages"] = {
                name: LanguageFit(**law) for name, law in data["languages"].items()
            }
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: malformed scaling fit: {error}") from None


@functools.lru_cache(maxsize=32)
def cached_profile(
    pairs: tuple, scores: tuple, level: float, form: Form = "power", ceiling: Optional[float] = None
) -> Profile:
    """One profile per data set and form: the fit's intervals, predictions and pairs needed all
    ask for it (pairs and scores as tuples of floats, the cache's key)."""
    return Profile(
        pairs,
        scores,
        ALPHA_BOUNDS,
        level,
        form,
        math.inf if ceiling is None else ceiling,
    )


def _plain(x):
    return float(x) if np.ndim(x) == 0 else x


def _finite_or_none(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None
