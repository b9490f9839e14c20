"""Scaling laws for parallel data, and the split of a pair budget across languages they imply.

Translation quality grows with the number of parallel pairs, with decreasing returns whose pace
depends on the language (how close it is to English). Fitted per language from a small results
table, that curve says how to spend a fixed budget of pairs on a multilingual (m-LLaMA) mixture
instead of splitting it evenly.

The law, per language::

    S(n) = S_max - A * (1 + n / n0) ** (-alpha)

``S_max`` is the ceiling, ``A`` the gap between the ceiling and the score with no pairs,
``alpha`` the pace of decreasing returns and ``n0`` the number of pairs at which returns start
to diminish. It is the textbook ``S_max - A' * (n + n0) ** (-alpha)`` with ``A' = A * n0**alpha``;
this form keeps ``A`` in the metric's own units, which keeps the fit well conditioned. The
shared-exponent variant ties ``A`` and ``alpha`` across languages and keeps a per-language
ceiling and similarity factor ``k_l = 1 / n0_l``:
``S_l(n) = S_max_l - A * (1 + k_l * n) ** (-alpha)``; a language close to English (large ``k_l``)
gets more out of each pair. It needs two data sizes per language instead of four.

Two entry points back the CLI: :func:`fit_command` (results table -> ``fit.json`` + ``fit.png``)
and :func:`allocate_command` (fit + budget -> the allocation YAML the MuIT data module reads).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Optional, Union

import numpy as np
import yaml
from matplotlib.figure import Figure
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import spearmanr

RESULT_COLUMNS = ("language", "pairs", "metric", "score")
"""Required columns of a results table (``seed`` is optional)."""
ALLOCATION_HEADER = "# lightning_xllama allocation file\n"
ALPHA_BOUNDS = (0.01, 3.0)
MAX_BRUTE_FORCE = 2_000_000
"""Most allocations the brute-force search will enumerate."""

Points = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per language: (pairs, scores) arrays of equal length."""


# ---------------------------------------------------------------------------------------------
# Results table


def read_results(path: Union[str, Path], metric: str) -> Points:
    """Read a results table and return (pairs, scores) per language for ``metric``.

    Every row is validated, not only the chosen metric's, so a broken table fails loudly instead
    of a fit quietly using part of it.
    """
    path = Path(path)
    rows: dict[str, list[tuple[float, float]]] = {}
    metrics: set[str] = set()
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in RESULT_COLUMNS if name not in header]
        if missing:
            raise ValueError(
                f"{path}, line 1: missing column(s) {missing}; expected a header with "
                f"{','.join(RESULT_COLUMNS)} (and optionally seed), got {header}"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            language, row_metric = _text(row, "language", where), _text(row, "metric", where)
            pairs, score = _number(row, "pairs", where), _number(row, "score", where)
            if pairs < 0 or pairs != int(pairs):
                raise ValueError(
                    f"{where}: pairs must be a non-negative whole number, got {row['pairs']!r}"
                )
            seed = (row.get("seed") or "").strip()
            if seed and not seed.lstrip("-").isdigit():
                raise ValueError(f"{where}: seed must be a whole number, got {seed!r}")
            metrics.add(row_metric)
            if row_metric == metric:
                rows.setdefault(language, []).append((pairs, score))
    if not rows:
        raise ValueError(
            f"{path}: no rows for metric {metric!r}; metrics in the file: {sorted(metrics)}"
        )
    return {
        language: (np.array([p for p, _ in points]), np.array([s for _, s in points]))
        for language, points in rows.items()
    }


def _text(row: dict, column: str, where: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise ValueError(
            f"{where}: empty {column!r}; expected a value in every column of {RESULT_COLUMNS}"
        )
    return value


def _number(row: dict, column: str, where: str) -> float:
    value = _text(row, column, where)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {column} {value!r} is not a finite number")
    return number


# ---------------------------------------------------------------------------------------------
# The law and its fitted form


def power_law(n, s_max, a, alpha, n0):
    """S(n) = S_max - A (1 + n/n0)^-alpha, vectorised over ``n`` and the parameters."""
    return s_max - a * (1.0 + np.asarray(n, dtype=float) / n0) ** (-alpha)


def inverse_power_law(score: float, s_max: float, a: float, alpha: float, n0: float) -> float:
    """Pairs at which the law reaches ``score``: 0 when no pairs are needed, inf when never."""
    if score >= s_max:
        return math.inf
    if score <= s_max - a:
        return 0.0
    return n0 * (((s_max - score) / a) ** (-1.0 / alpha) - 1.0)


class Estimate(NamedTuple):
    """A point estimate with its bootstrap interval (NaN bounds when no bootstrap was run)."""

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
    model: Literal["power", "flat"] = "power"
    """``flat``: the scores did not grow with the pairs and a constant ``s_max`` stands in."""
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

    @property
    def params(self) -> tuple[float, float, float, float]:
        return self.s_max, self.a, self.alpha, self.n0

    @property
    def n_range(self) -> tuple[float, float]:
        return min(self.pairs), max(self.pairs)


@dataclass
class ScalingFit:
    """Fitted laws for every language of one metric; saved as ``fit.json``."""

    metric: str
    languages: dict[str, LanguageFit]
    shared_exponent: bool = False
    level: float = 0.95
    """Coverage of the bootstrap intervals."""

    def law(self, language: str) -> LanguageFit:
        if language not in self.languages:
            raise ValueError(
                f"no fitted law for language {language!r}; fitted: {sorted(self.languages)}"
            )
        return self.languages[language]

    def predict(self, language: str, n) -> Estimate:
        """Predicted score after ``n`` pairs (scalar or array), with its bootstrap interval."""
        law = self.law(language)
        value = power_law(n, *law.params)
        if not law.bootstrap:
            unknown = _plain(np.full_like(value, np.nan))
            return Estimate(_plain(value), unknown, unknown)
        curves = power_law(np.asarray(n, dtype=float)[..., None], *np.array(law.bootstrap).T)
        low, high = np.quantile(curves, self._quantiles, axis=-1)
        return Estimate(_plain(value), _plain(low), _plain(high))

    def pairs_needed(self, language: str, target: float) -> Estimate:
        """Pairs needed to reach ``target``; the high end is inf when some resamples never do."""
        law = self.law(language)
        if target >= law.s_max:
            raise ValueError(
                f"{self.metric} {target} is unreachable for {language!r}: "
                f"the fitted ceiling S_max is {law.s_max:.4g}"
            )
        value = inverse_power_law(target, *law.params)
        if not law.bootstrap:
            return Estimate(value, math.nan, math.nan)
        needed = [inverse_power_law(target, *params) for params in law.bootstrap]
        # "nearest": interpolating between inf values would give NaN
        low, high = np.quantile(needed, self._quantiles, method="nearest")
        return Estimate(value, float(low), float(high))

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
            raise ValueError(f"{path}: not a scaling fit (expected a JSON object with kind: scaling_fit)")
        try:
            data["languages"] = {name: LanguageFit(**law) for name, law in data["languages"].items()}
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: malformed scaling fit: {error}") from None


def _plain(x):
    return float(x) if np.ndim(x) == 0 else x


def _finite_or_none(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


# ---------------------------------------------------------------------------------------------
# Fitting


def fit_scaling(
    points: Points,
    metric: str,
    shared_exponent: bool = False,
    n_bootstrap: int = 200,
    seed: int = 0,
    on_non_increasing: Literal["error", "flat"] = "error",
    level: float = 0.95,
) -> ScalingFit:
    """Fit the law per language (or jointly with a shared exponent) with bootstrap bands.

    The bands come from a residual bootstrap: each resample adds the language's own residuals,
    drawn with replacement by a seeded generator, to the fitted curve and refits. Unlike
    resampling whole points it keeps every data size in every resample, so each refit stays
    identifiable when a language has only a handful of sizes.
    """
    rng = np.random.default_rng(seed)
    growing = [
        language
        for language, (n, y) in points.items()
        if _grows(language, n, y, metric, on_non_increasing)
    ]
    fits = {
        language: _fit_flat(language, *points[language], metric, n_bootstrap, rng)
        for language in points
        if language not in growing
    }
    groups = [growing] if shared_exponent and growing else [[language] for language in growing]
    for group in groups:
        fits.update(_fit_power(group, points, metric, n_bootstrap, rng))
    return ScalingFit(metric, {language: fits[language] for language in points}, shared_exponent, level)


def _grows(language: str, n: np.ndarray, y: np.ndarray, metric: str, on_non_increasing: str) -> bool:
    """Whether scores rise with pairs (Spearman rho > 0): a law fitted otherwise is nonsense.

    The law itself cannot decrease (A > 0, alpha > 0), so this check on the data is the one
    that catches a table where more pairs did not help.
    """
    if len(np.unique(n)) < 2:
        return True  # nothing to judge: the parameter count check reports it
    rho = spearmanr(n, y).statistic if np.ptp(y) > 0 else 0.0
    if rho > 0:
        return True
    message = (
        f"language {language!r}: {metric} does not grow with the number of pairs "
        f"(Spearman rho {rho:.2f} over {len(n)} points)"
    )
    if on_non_increasing == "error":
        raise ValueError(
            f"{message}; check the results table, or pass on_non_increasing='flat' "
            "to model it as a constant"
        )
    warnings.warn(f"{message}; modelled as a flat score at its mean", stacklevel=3)
    return False


def _fit_flat(language: str, n: np.ndarray, y: np.ndarray, metric: str, n_bootstrap: int, rng) -> LanguageFit:
    """The constant model standing in for a language whose scores do not grow."""
    mean = float(y.mean())
    means = rng.choice(y, size=(n_bootstrap, len(y))).mean(axis=1)
    return LanguageFit(
        language, metric, s_max=mean, a=0.0, alpha=0.0, n0=1.0, model="flat",
        stderr={"s_max": _finite_or_none(y.std(ddof=1) / math.sqrt(len(y))) if len(y) > 1 else None},
        r2=0.0 if np.ptp(y) > 0 else None,
        pairs=n.tolist(), scores=y.tolist(), residuals=(y - mean).tolist(),
        bootstrap=[[float(m), 0.0, 0.0, 1.0] for m in means],
    )


def _fit_power(
    languages: list[str], points: Points, metric: str, n_bootstrap: int, rng
) -> dict[str, LanguageFit]:
    """Fit one law per language, jointly when several languages share A and alpha.

    The parameter vector is (log10 A, alpha, S_max per language, log10 n0 per language): A and
    n0 span orders of magnitude, and logs keep them well scaled for the optimiser.
    """
    count = len(languages)
    ns, ys = [points[language][0] for language in languages], [points[language][1] for language in languages]
    _check_sizes(languages, ns, metric)
    n, y = np.concatenate(ns), np.concatenate(ys)
    index = np.repeat(np.arange(count), [len(sizes) for sizes in ns])

    def model(x, log_a, alpha, *rest):
        s_max, log_n0 = np.asarray(rest[:count]), np.asarray(rest[count:])
        return power_law(x, s_max[index], 10.0**log_a, alpha, 10.0 ** log_n0[index])

    bounds, starts = _bounds_and_starts(ns, ys)
    theta, covariance = _best_fit(model, n, y, starts, bounds)
    if theta is None:
        raise RuntimeError(f"the scaling law fit did not converge for {languages} ({metric})")
    fitted = model(n, *theta)
    resampled = _bootstrap(model, n, fitted - y, fitted, index, theta, bounds, n_bootstrap, rng, languages)

    # standard errors of A and n0 from those of their logs (delta method)
    stderr = np.sqrt(np.diag(covariance)) if np.all(np.isfinite(covariance)) else np.full(len(theta), np.nan)
    fits = {}
    for position, (language, sizes, scores) in enumerate(zip(languages, ns, ys)):
        s_max, a, alpha, n0 = _unpack(theta, count)[position]
        s_max_upper = bounds[1][2 + position]
        if math.isclose(s_max, s_max_upper, rel_tol=1e-4):
            warnings.warn(
                f"language {language!r}: the ceiling S_max reached its upper bound {s_max_upper:.4g}; "
                f"{metric} has not started to saturate within the data, so extrapolation is unreliable",
                stacklevel=3,
            )
        residuals = scores - fitted[index == position]
        total = ((scores - scores.mean()) ** 2).sum()
        fits[language] = LanguageFit(
            language, metric, float(s_max), float(a), float(alpha), float(n0),
            stderr={
                "s_max": _finite_or_none(stderr[2 + position]),
                "a": _finite_or_none(a * math.log(10) * stderr[0]),
                "alpha": _finite_or_none(stderr[1]),
                "n0": _finite_or_none(n0 * math.log(10) * stderr[2 + count + position]),
            },
            r2=float(1 - (residuals**2).sum() / total) if total > 0 else None,
            pairs=sizes.tolist(), scores=scores.tolist(), residuals=residuals.tolist(),
            bootstrap=resampled[:, position, :].tolist(),
        )
    return fits


def _check_sizes(languages: list[str], ns: list[np.ndarray], metric: str) -> None:
    """Refuse a fit with fewer distinct data sizes than parameters: it would be underdetermined."""
    own = 2 if len(languages) > 1 else 4  # parameters each language must pin down by itself
    for language, sizes in zip(languages, ns):
        distinct = np.unique(sizes).astype(int).tolist()
        if len(distinct) < own:
            raise ValueError(
                f"language {language!r} has {len(distinct)} distinct pair count(s) {distinct} for "
                f"{metric}, fewer than the {own} parameters its law needs; add results at more "
                "data sizes" + ("" if len(languages) > 1 else " or fit with shared_exponent=True")
            )
    distinct_points = sum(len(np.unique(sizes)) for sizes in ns)
    if distinct_points < 2 + 2 * len(languages):
        raise ValueError(
            f"the shared fit has {distinct_points} distinct (language, pairs) points "
            f"for {2 + 2 * len(languages)} parameters"
        )


def _bounds_and_starts(ns: list[np.ndarray], ys: list[np.ndarray]) -> tuple:
    """Parameter bounds and a small grid of starting points, both read off the data.

    S_max lies between the lowest score and the highest plus max(|highest|, 2 x span); n0
    between 1 pair and 1000x the largest size; alpha in ALPHA_BOUNDS. Each start sets S_max a
    little or well above the best score, n0 near the typical size, and A so the curve passes
    through the scores at the smallest size.
    """
    count = len(ns)
    high, low = np.array([y.max() for y in ys]), np.array([y.min() for y in ys])
    span = np.maximum(high - low, 1e-9 * np.maximum(1.0, np.abs(high)))
    log_scale = math.log10(max(span.max(), np.abs(high).max()))
    log_n0_upper = np.log10([max(n.max(), 1.0) for n in ns]) + 3
    lower = np.concatenate([[log_scale - 6, ALPHA_BOUNDS[0]], low, np.zeros(count)])
    upper = np.concatenate(
        [[log_scale + 12, ALPHA_BOUNDS[1]], high + np.maximum(np.abs(high), 2 * span), log_n0_upper]
    )
    n_first = np.array([n.min() for n in ns])
    first = np.array([y[n == n.min()].mean() for n, y in zip(ns, ys)])
    typical = np.array([np.exp(np.log(np.maximum(n, 1.0)).mean()) for n in ns])
    starts = []
    for alpha, headroom, scale in itertools.product((0.3, 0.8, 1.5), (0.05, 0.5), (0.1, 1.0)):
        s_max, n0 = high + headroom * span, np.maximum(scale * typical, 1.0)
        a = np.median((s_max - first) * (1 + n_first / n0) ** alpha)
        start = np.concatenate([[math.log10(a), alpha], s_max, np.log10(n0)])
        starts.append(np.clip(start, lower, upper))
    return (lower, upper), starts


def _unpack(theta: np.ndarray, count: int) -> np.ndarray:
    """Optimiser parameters -> one (s_max, a, alpha, n0) row per language."""
    a, alpha = np.full(count, 10.0 ** theta[0]), np.full(count, theta[1])
    return np.column_stack([theta[2 : 2 + count], a, alpha, 10.0 ** theta[2 + count :]])


def _best_fit(model: Callable, n: np.ndarray, y: np.ndarray, starts: list, bounds: tuple) -> tuple:
    """curve_fit from each start; keep the lowest squared error (the surface has several basins)."""
    best = (math.inf, None, None)
    for start in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # infinite covariance -> stderr None
            try:
                theta, covariance = curve_fit(model, n, y, p0=start, bounds=bounds)
            except (RuntimeError, ValueError):
                continue
        error = float(((model(n, *theta) - y) ** 2).sum())
        if error < best[0]:
            best = (error, theta, covariance)
    return best[1], best[2]


def _bootstrap(model, n, errors, fitted, index, theta, bounds, n_bootstrap, rng, languages) -> np.ndarray:
    """Refit on fitted + resampled residuals (drawn within each language): (B, languages, 4)."""
    count, dof = len(languages), len(n) - len(theta)
    if dof <= 0 and n_bootstrap:
        warnings.warn(
            f"{languages}: as many data points as parameters, the fit is exact "
            "and its bootstrap band has zero width",
            stacklevel=4,
        )
    centred = [errors[index == position] - errors[index == position].mean() for position in range(count)]
    inflation = math.sqrt(len(n) / dof) if dof > 0 else 0.0  # residuals shrink the noise by (m-p)/m
    rows, failures = [], 0
    for _ in range(n_bootstrap):
        noise = np.concatenate([rng.choice(r, size=len(r)) for r in centred])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            try:
                refit = curve_fit(model, n, fitted + inflation * noise, p0=theta, bounds=bounds)[0]
            except (RuntimeError, ValueError):
                failures += 1
                continue
        rows.append(_unpack(refit, count))
    if failures:
        warnings.warn(
            f"{languages}: {failures} of {n_bootstrap} bootstrap refits did not converge and were left out",
            stacklevel=4,
        )
    return np.array(rows).reshape(len(rows), count, 4)


# ---------------------------------------------------------------------------------------------
# Plot


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
            axis.fill_between(grid, estimate.low, estimate.high, alpha=0.25, label=f"{fit.level:.0%} band")
        axis.set_xscale("symlog", linthresh=smallest)
        r2 = "n/a" if law.r2 is None else f"{law.r2:.3f}"
        axis.set(title=f"{language}  (R² {r2})", xlabel="parallel pairs", ylabel=fit.metric)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    axes[0].legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------------------------------
# Allocation


@dataclass
class Allocation:
    """Pairs per language chosen by the optimiser, beside the uniform split it is judged against."""

    metric: str
    objective: Literal["sum", "min"]
    counts: dict[str, int]
    scores: dict[str, float]
    uniform_counts: dict[str, int]
    uniform_scores: dict[str, float]

    @property
    def budget(self) -> int:
        return sum(self.counts.values())

    @property
    def predicted_total(self) -> float:
        return sum(self.scores.values())

    @property
    def uniform_total(self) -> float:
        return sum(self.uniform_scores.values())

    @property
    def objective_value(self) -> float:
        return _objective(self.scores, self.objective)


def _objective(scores: dict[str, float], objective: str) -> float:
    return sum(scores.values()) if objective == "sum" else min(scores.values())


def allocate(
    fit: ScalingFit,
    budget: int,
    objective: Literal["sum", "min"] = "sum",
    caps: Optional[dict[str, int]] = None,
    minimums: Optional[dict[str, int]] = None,
    step: Optional[int] = None,
    languages: Optional[list[str]] = None,
    search: Literal["greedy", "brute_force"] = "greedy",
    if_caps_short: Literal["error", "use_all"] = "error",
) -> Allocation:
    """Split ``budget`` pairs across languages to maximise the summed or the worst predicted score.

    Greedy hands out ``step`` pairs at a time to the language that gains most (``sum``) or scores
    lowest (``min``); with concave, increasing laws both are optimal on the step grid.
    ``brute_force`` enumerates that grid and exists to check the greedy on small cases.
    """
    if objective not in ("sum", "min"):
        raise ValueError(f"objective must be 'sum' or 'min', got {objective!r}")
    if budget < 0 or (step is not None and step <= 0):
        raise ValueError(f"budget must be >= 0 and step > 0 pairs, got budget {budget}, step {step}")
    languages = list(languages or fit.languages)
    for language in languages:
        fit.law(language)
    caps = _per_language(caps, languages, "caps", default=budget)
    minimums = _per_language(minimums, languages, "minimums", default=0)
    for language in languages:
        if minimums[language] > caps[language]:
            raise ValueError(
                f"language {language!r}: minimum {minimums[language]} is above its cap {caps[language]}"
            )
    if sum(minimums.values()) > budget:
        raise ValueError(
            f"budget {budget} is below the sum of the minimums {sum(minimums.values())} ({minimums})"
        )
    if sum(caps.values()) < budget:
        message = f"the caps add up to {sum(caps.values())} pairs, fewer than the budget {budget} ({caps})"
        if if_caps_short == "error":
            raise ValueError(f"{message}: infeasible; lower the budget or pass if_caps_short='use_all'")
        warnings.warn(f"{message}: allocating every pair that exists", stacklevel=2)
        budget = sum(caps.values())
    step = step or max(1, budget // 1000)

    def score(language: str, n: int) -> float:
        return float(power_law(n, *fit.languages[language].params))

    search_function = _greedy if search == "greedy" else _brute_force
    counts = search_function(score, languages, budget, caps, minimums, step, objective)
    uniform = _uniform_split(languages, budget, caps, minimums)
    return Allocation(
        fit.metric,
        objective,
        counts,
        {language: score(language, count) for language, count in counts.items()},
        uniform,
        {language: score(language, count) for language, count in uniform.items()},
    )


def _per_language(
    values: Optional[dict[str, int]], languages: list[str], what: str, default: int
) -> dict[str, int]:
    values = values or {}
    unknown = sorted(set(values) - set(languages))
    if unknown:
        raise ValueError(f"{what} name {unknown}, which are not among the languages allocated {languages}")
    for language, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}[{language!r}] must be a non-negative whole number, got {value!r}")
    return {language: values.get(language, default) for language in languages}


def _greedy(score, languages, budget, caps, minimums, step, objective) -> dict[str, int]:
    counts = dict(minimums)
    remaining = budget - sum(counts.values())

    def increment(language: str) -> int:
        return min(step, caps[language] - counts[language], remaining)

    def priority(language: str) -> tuple:
        now = counts[language]
        gain = (score(language, now + increment(language)) - score(language, now)) / increment(language)
        # "min": raise the lowest score among languages that can still improve
        return (gain,) if objective == "sum" else (gain > 0, -score(language, now), gain)

    while remaining > 0:
        chosen = max((language for language in languages if counts[language] < caps[language]), key=priority)
        given = increment(chosen)
        counts[chosen] += given
        remaining -= given
    return counts


def _brute_force(score, languages, budget, caps, minimums, step, objective) -> dict[str, int]:
    """Every allocation on the step grid (the last language takes the rest); best objective, then sum."""
    options = [range(minimums[language], caps[language] + 1, step) for language in languages[:-1]]
    size = math.prod(len(option) for option in options)
    if size > MAX_BRUTE_FORCE:
        raise ValueError(
            f"brute force would enumerate {size} allocations (limit {MAX_BRUTE_FORCE}); "
            "use search='greedy' or a larger step"
        )
    last, best, best_value = languages[-1], None, None
    for head in itertools.product(*options):
        rest = budget - sum(head)
        if not minimums[last] <= rest <= caps[last]:
            continue
        counts = dict(zip(languages, (*head, rest)))
        scores = {language: score(language, count) for language, count in counts.items()}
        value = (_objective(scores, objective), sum(scores.values()))
        if best is None or value > best_value:
            best, best_value = counts, value
    return best


def _uniform_split(
    languages: list[str], budget: int, caps: dict[str, int], minimums: dict[str, int]
) -> dict[str, int]:
    """The even split: one common level clipped to each language's [minimum, cap].

    What a capped language cannot take goes to the others, so the budget is spent in full.
    """

    def at_level(level: int) -> dict[str, int]:
        return {language: min(max(level, minimums[language]), caps[language]) for language in languages}

    low, high = 0, max(caps.values())
    while low < high:  # the highest level whose clipped counts still fit the budget
        middle = (low + high + 1) // 2
        low, high = (middle, high) if sum(at_level(middle).values()) <= budget else (low, middle - 1)
    counts = at_level(low)
    short = budget - sum(counts.values())
    for language in languages:  # the remainder: one more pair to languages still below their cap
        if short and minimums[language] <= low < caps[language]:
            counts[language] += 1
            short -= 1
    return counts


def write_allocation(
    path: Union[str, Path], allocation: Allocation, direction: Literal["en-x", "x-en"] = "en-x"
) -> Path:
    """Write the allocation YAML the MuIT data module reads (one parallel stream per language)."""
    streams = [
        {
            "kind": "parallel",
            "lang": language,
            "direction": f"en-{language}" if direction == "en-x" else f"{language}-en",
            "count": count,
            "predicted_score": round(allocation.scores[language], 4),
        }
        for language, count in allocation.counts.items()
    ]
    head = {
        "kind": "allocation",
        "metric": allocation.metric,
        "objective": allocation.objective,
        "budget": allocation.budget,
    }
    totals = {
        "uniform": {
            "counts": allocation.uniform_counts,
            "predicted_total": round(allocation.uniform_total, 4),
            "predicted_min": round(min(allocation.uniform_scores.values()), 4),
        },
        "optimised": {
            "predicted_total": round(allocation.predicted_total, 4),
            "predicted_min": round(min(allocation.scores.values()), 4),
        },
    }
    path = Path(path)
    path.write_text(
        ALLOCATION_HEADER
        + yaml.safe_dump(head, sort_keys=False)
        + yaml.safe_dump({"streams": streams}, sort_keys=False, default_flow_style=None)  # a line each
        + yaml.safe_dump(totals, sort_keys=False)
    )
    return path


def read_allocation(path: Union[str, Path]) -> dict:
    """Read and validate an allocation file; errors name the file and the stream's index."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or document.get("kind") != "allocation":
        found = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"{path}: expected a mapping with 'kind: allocation', found {found!r}")
    streams = document.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ValueError(f"{path}: 'streams' must be a non-empty list of stream entries")
    for position, stream in enumerate(streams):
        where = f"{path}: streams[{position}]"
        if not isinstance(stream, dict):
            raise ValueError(f"{where}: expected a mapping (kind, lang, count or weight), got {stream!r}")
        for key in ("kind", "lang"):
            if not isinstance(stream.get(key), str) or not stream[key]:
                raise ValueError(f"{where}: missing {key!r} (a non-empty string)")
        if "count" not in stream and "weight" not in stream:
            raise ValueError(f"{where}: needs a 'count' (pairs) or a 'weight'")
        count, weight = stream.get("count", 0), stream.get("weight", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{where}: count must be a non-negative whole number, got {count!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"{where}: weight must be a non-negative number, got {weight!r}")
    counts = [stream["count"] for stream in streams if "count" in stream]
    if "budget" in document and len(counts) == len(streams) and sum(counts) != document["budget"]:
        raise ValueError(
            f"{path}: stream counts add up to {sum(counts)}, not the budget {document['budget']}"
        )
    return document


# ---------------------------------------------------------------------------------------------
# Entry points (exposed by the CLI as `scaling fit` and `scaling allocate`)


def fit_command(
    results: str,
    out: str,
    metric: str = "chrf_pp",
    shared_exponent: bool = False,
    n_bootstrap: int = 200,
    seed: int = 0,
    on_non_increasing: Literal["error", "flat"] = "error",
) -> dict:
    """Fit the scaling law of each language to a results table; write fit.json and fit.png.

    Args:
        results: CSV results table with columns language,pairs,metric,score (and optionally seed).
        out: Folder that receives fit.json (the fitted laws) and fit.png (one panel per language).
        metric: Which metric of the table to fit (chrf_pp, bleu, comet...: the names `scaling sweep` and the
            evaluation callbacks log).
        shared_exponent: Fit all languages jointly with a shared A and alpha and a per-language
            similarity factor k = 1/n0; needs two data sizes per language instead of four.
        n_bootstrap: Bootstrap refits behind the confidence bands (0 for no bands).
        seed: Seed of the bootstrap resampling.
        on_non_increasing: What to do with a language whose scores do not grow with the pairs:
            stop with an error, or model it as a flat score and warn.

    Returns:
        Paths of the written files and the fitted parameters per language.
    """
    points = read_results(results, metric)
    fit = fit_scaling(points, metric, shared_exponent, n_bootstrap, seed, on_non_increasing)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    fit_path, plot_path = fit.save(folder / "fit.json"), plot_fits(fit, folder / "fit.png")
    print(f"{'language':<16}{'model':>6}{'S_max':>10}{'A':>10}{'alpha':>8}{'n0':>12}{'R^2':>8}")
    for language, law in fit.languages.items():
        r2 = "n/a" if law.r2 is None else f"{law.r2:.3f}"
        print(
            f"{language:<16}{law.model:>6}{law.s_max:>10.3f}{law.a:>10.3f}"
            f"{law.alpha:>8.3f}{law.n0:>12.1f}{r2:>8}"
        )
    print(f"wrote {fit_path} and {plot_path}")
    return {
        "fit": str(fit_path),
        "plot": str(plot_path),
        "metric": metric,
        "languages": {
            language: {
                "model": law.model, "s_max": law.s_max, "a": law.a, "alpha": law.alpha,
                "n0": law.n0, "r2": law.r2, "n_range": list(law.n_range),
            }
            for language, law in fit.languages.items()
        },
    }


def allocate_command(
    fit: str,
    budget: int,
    out: str,
    objective: Literal["sum", "min"] = "sum",
    caps: Optional[dict[str, int]] = None,
    minimums: Optional[dict[str, int]] = None,
    step: Optional[int] = None,
    languages: Optional[list[str]] = None,
    direction: Literal["en-x", "x-en"] = "en-x",
    if_caps_short: Literal["error", "use_all"] = "error",
) -> dict:
    """Split a budget of parallel pairs across languages from fitted laws; write allocation.yaml.

    Args:
        fit: fit.json written by `scaling fit`, or the folder holding it.
        budget: Total number of parallel pairs to spend.
        out: Folder that receives allocation.yaml (read by the MuIT data module).
        objective: Maximise the summed predicted score (sum) or the worst language's (min).
        caps: Pairs that exist per language; a language cannot get more. Default: no cap.
        minimums: Pairs each language must get at least. Default: 0.
        step: Pairs handed out per greedy step. Default: budget / 1000.
        languages: Languages to allocate. Default: every language in the fit.
        direction: Translation direction of the parallel streams: English to X or X to English.
        if_caps_short: When the caps add up to less than the budget: stop with an error, or
            allocate every pair that exists and warn.

    Returns:
        The allocation file's path and the optimised and uniform counts, scores and totals.
    """
    fit_path = Path(fit) / "fit.json" if Path(fit).is_dir() else Path(fit)
    allocation = allocate(
        ScalingFit.load(fit_path), budget, objective, caps, minimums, step, languages,
        if_caps_short=if_caps_short,
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_allocation(folder / "allocation.yaml", allocation, direction)
    metric = allocation.metric
    print(f"{'language':<16}{'uniform':>10}{metric:>9}{'optimised':>11}{metric:>9}")
    for language, count in allocation.counts.items():
        uniform = f"{allocation.uniform_counts[language]:>10}{allocation.uniform_scores[language]:>9.2f}"
        print(f"{language:<16}{uniform}{count:>11}{allocation.scores[language]:>9.2f}")
    total = allocation.budget
    uniform = f"{total:>10}{allocation.uniform_total:>9.2f}"
    print(f"{'total':<16}{uniform}{total:>11}{allocation.predicted_total:>9.2f}")
    print(f"wrote {path}")
    return {
        "allocation": str(path),
        "objective": objective,
        "budget": total,
        "optimised": {
            "counts": allocation.counts, "scores": allocation.scores,
            "predicted_total": allocation.predicted_total,
        },
        "uniform": {
            "counts": allocation.uniform_counts, "scores": allocation.uniform_scores,
            "predicted_total": allocation.uniform_total,
        },
    }
