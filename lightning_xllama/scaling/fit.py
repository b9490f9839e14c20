"""Fitting the law to a results table: per language or with a shared exponent, in either form or
the better of the two, with profile intervals or bootstrap bands."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Literal, Optional

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import spearmanr

from lightning_xllama.scaling.forms import (
    ALPHA_BOUNDS,
    FORMS,
    METRIC_CEILINGS,
    Form,
    decay,
    law_curve,
)
from lightning_xllama.scaling.law import (
    LanguageFit,
    ScalingFit,
    _finite_or_none,
    cached_profile,
)
from lightning_xllama.scaling.profile import s_max_bounds
from lightning_xllama.scaling.results import Points


def fit_scaling(
    points: Points,
    metric: str,
    shared_exponent: bool = False,
    n_bootstrap: int = 200,
    seed: int = 0,
    on_non_increasing: Literal["error", "flat"] = "error",
    level: float = 0.95,
    intervals: Literal["profile", "bootstrap"] = "profile",
    form: Literal["power", "stretched_exp", "auto"] = "power",
    ceiling: Optional[float] = None,
) -> ScalingFit:
    """Fit the law per language (or jointly with a shared exponent) with intervals and bands.

    ``form`` is the law's shape (:mod:`~lightning_xllama.scaling.forms`): the paper's
    ``power`` law, the ``stretched_exp`` whose gap can close faster than any power law, or ``auto``:
    both, keeping per language (per group when the exponent is shared) the one with the
    smaller squared error; both have four parameters, so that is also the better AIC.
    ``ceiling`` bounds S_max: by default the metric's maximum (:data:`METRIC_CEILINGS`, 100
    for chrF++ and BLEU; none for other metrics); ``math.inf`` lifts it (recorded as None).

    ``profile`` (the default): a language fitted alone on more than four points gets
    profile-likelihood intervals (:mod:`~lightning_xllama.scaling.profile`) for its parameters,
    predictions and pairs needed; in ``benchmarks/scaling_coverage.py`` their 95% intervals
    cover the truth 93.3-94.8% of the time per parameter over 1000 data sets of five
    scenarios (91.0-97.0% per scenario and parameter); the bootstrap's covered 91-92% in an
    earlier draw of 210 (84-97%). Shared-exponent fits of two or more
    languages (one language left in a group is fitted alone, profile included) and flat fits, and fits with as many points as parameters, keep the bootstrap.

    The bootstrap is a residual bootstrap: each resample adds the language's own residuals,
    drawn with replacement by a seeded generator, to the fitted curve and refits. Unlike
    resampling whole points it keeps every data size in every resample, so each refit stays
    identifiable when a language has only a handful of sizes.
    """
    if intervals not in ("profile", "bootstrap"):
        raise ValueError(f"intervals must be 'profile' or 'bootstrap', got {intervals!r}")
    if form not in (*FORMS, "auto"):
        raise ValueError(f"form must be one of {(*FORMS, 'auto')}, got {form!r}")
    ceiling = METRIC_CEILINGS.get(metric, math.inf) if ceiling is None else float(ceiling)
    for language, (_, y) in points.items():
        if len(y) and y.max() > ceiling:
            raise ValueError(
                f"language {language!r}: a {metric} score of {y.max():.4g} is above the metric's "
                f"maximum {ceiling:.4g}; check the results table's scale, or pass the ceiling "
                "its scores have (math.inf for none)"
            )
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
        candidates, failures = [], []
        for shape in FORMS if form == "auto" else (form,):
            try:
                candidates.append(
                    _fit_law(
                        group, points, metric, shape, ceiling, n_bootstrap, rng, intervals, level
                    )
                )
            except RuntimeError as error:  # with auto, the other form may still fit
                failures.append(str(error))
        if not candidates:
            raise RuntimeError("; ".join(failures))
        chosen = min(candidates, key=_squared_error)
        _warn_unsaturated(chosen, ceiling)
        fits.update(chosen)
    return ScalingFit(
        metric,
        {language: fits[language] for language in points},
        shared_exponent,
        level,
        ceiling,  # ScalingFit records an infinite one as None
    )


def _squared_error(fits: dict[str, LanguageFit]) -> float:
    return sum(float(np.square(law.residuals).sum()) for law in fits.values())


def _warn_unsaturated(fits: dict[str, LanguageFit], ceiling: float) -> None:
    """Warn where S_max sits on its upper bound: the bound read off the data (the scores have
    not started to saturate) or the metric's maximum (they show no lower ceiling)."""
    for language, law in fits.items():
        upper = s_max_bounds(law.scores, ceiling)[1]
        if not math.isclose(law.s_max, upper, rel_tol=1e-4):
            continue
        if upper < ceiling:
            message = (
                f"the ceiling S_max reached its upper bound {upper:.4g}; {law.metric} has not "
                "started to saturate within the data, so extrapolation is unreliable"
            )
        else:
            message = (
                f"the ceiling S_max is held at {law.metric}'s maximum {ceiling:.4g}: the data "
                "show no lower ceiling, so the law assumes the top of the scale is reachable"
            )
        warnings.warn(f"language {language!r}: {message}", stacklevel=3)


def _grows(
    language: str, n: np.ndarray, y: np.ndarray, metric: str, on_non_increasing: str
) -> bool:
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


def _fit_flat(
    language: str, n: np.ndarray, y: np.ndarray, metric: str, n_bootstrap: int, rng
) -> LanguageFit:
    """The constant model standing in for a language whose scores do not grow."""
    mean = float(y.mean())
    means = rng.choice(y, size=(n_bootstrap, len(y))).mean(axis=1)
    return LanguageFit(
        language,
        metric,
        s_max=mean,
        a=0.0,
        alpha=0.0,
        n0=1.0,
        model="flat",
        stderr={
            "s_max": _finite_or_none(y.std(ddof=1) / math.sqrt(len(y))) if len(y) > 1 else None
        },
        r2=0.0 if np.ptp(y) > 0 else None,
        pairs=n.tolist(),
        scores=y.tolist(),
        residuals=(y - mean).tolist(),
        bootstrap=[[float(m), 0.0, 0.0, 1.0] for m in means],
    )


def _fit_law(
    languages: list[str],
    points: Points,
    metric: str,
    form: Form,
    ceiling: float,
    n_bootstrap: int,
    rng,
    intervals: str,
    level: float,
) -> dict[str, LanguageFit]:
    """Fit one law per language, jointly when several languages share A and alpha.

    The parameter vector is (log10 A, alpha, S_max per language, log10 n0 per language): A and
    n0 span orders of magnitude, and logs keep them well scaled for the optimiser.
    """
    count = len(languages)
    ns, ys = (
        [points[language][0] for language in languages],
        [points[language][1] for language in languages],
    )
    _check_sizes(languages, ns, metric)
    n, y = np.concatenate(ns), np.concatenate(ys)
    index = np.repeat(np.arange(count), [len(sizes) for sizes in ns])

    def model(x, log_a, alpha, *rest):
        s_max, log_n0 = np.asarray(rest[:count]), np.asarray(rest[count:])
        return law_curve(form, x, s_max[index], 10.0**log_a, alpha, 10.0 ** log_n0[index])

    bounds, starts = _bounds_and_starts(ns, ys, form, ceiling)
    theta, covariance = _best_fit(model, n, y, starts, bounds)
    if theta is None:
        raise RuntimeError(
            f"the scaling law fit ({form}) did not converge for {languages} ({metric})"
        )
    fitted = model(n, *theta)
    profiled = intervals == "profile" and count == 1 and len(n) > 4
    resampled = _bootstrap(
        model,
        n,
        fitted - y,
        fitted,
        index,
        theta,
        bounds,
        0 if profiled else n_bootstrap,
        rng,
        languages,
    )

    # standard errors of A and n0 from those of their logs (delta method)
    stderr = (
        np.sqrt(np.diag(covariance))
        if np.all(np.isfinite(covariance))
        else np.full(len(theta), np.nan)
    )
    fits = {}
    for position, (language, sizes, scores) in enumerate(zip(languages, ns, ys)):
        s_max, a, alpha, n0 = _unpack(theta, count)[position]
        residuals = scores - fitted[index == position]
        total = ((scores - scores.mean()) ** 2).sum()
        fits[language] = LanguageFit(
            language,
            metric,
            float(s_max),
            float(a),
            float(alpha),
            float(n0),
            model=form,
            stderr={
                "s_max": _finite_or_none(stderr[2 + position]),
                "a": _finite_or_none(a * math.log(10) * stderr[0]),
                "alpha": _finite_or_none(stderr[1]),
                "n0": _finite_or_none(n0 * math.log(10) * stderr[2 + count + position]),
            },
            r2=float(1 - (residuals**2).sum() / total) if total > 0 else None,
            pairs=sizes.tolist(),
            scores=scores.tolist(),
            residuals=residuals.tolist(),
            bootstrap=resampled[:, position, :].tolist(),
            intervals=_profile_intervals(sizes, scores, level, form, ceiling) if profiled else {},
        )
    return fits


def _profile_intervals(n, y, level: float, form: Form, ceiling: float) -> dict[str, list[float]]:
    """Profile intervals of the four parameters (S_max held to the fit's own range)."""
    profile = cached_profile(
        tuple(n.tolist()),
        tuple(y.tolist()),
        level,
        form,
        ceiling if math.isfinite(ceiling) else None,
    )
    return {name: list(profile.interval(name)) for name in ("s_max", "a", "alpha", "n0")}


def _check_sizes(languages: list[str], ns: list[np.ndarray], metric: str) -> None:
    """Refuse a fit that cannot pin down each language's law: it would be underdetermined.

    Alone, a language has four parameters and needs four sizes. Shared, it has two of its own
    (S_max, n0) but still needs three sizes: through two points the curve with the shared A and
    alpha passes exactly for two different (S_max, n0), so the data cannot tell which is right.
    With three sizes each, L >= 2 languages also give the 2L + 2 points the joint fit needs.
    """
    shared = len(languages) > 1
    needed = 3 if shared else 4
    for language, sizes in zip(languages, ns):
        distinct = np.unique(sizes).astype(int).tolist()
        if len(distinct) < needed:
            why = (
                "its shared-exponent law needs (two sizes fit its S_max and n0 exactly in two "
                "different ways)"
                if shared
                else "parameters its law needs"
            )
            raise ValueError(
                f"language {language!r} has {len(distinct)} distinct pair count(s) {distinct} for "
                f"{metric}, fewer than the {needed} {why}; add results at more data sizes"
                + ("" if shared else " or fit with shared_exponent=True")
            )


def _bounds_and_starts(
    ns: list[np.ndarray], ys: list[np.ndarray], form: Form, ceiling: float
) -> tuple:
    """Parameter bounds and a small grid of starting points, both read off the data.

    S_max lies between the lowest score and the highest plus max(|highest|, 2 x span), at
    most the metric's ``ceiling``; n0
    between 1 pair and 1000x the largest size; alpha in ALPHA_BOUNDS. Each start sets S_max a
    little or well above the best score, n0 near the typical size, and A so the curve passes
    through the scores at the smallest size.
    """
    count = len(ns)
    high, low = np.array([y.max() for y in ys]), np.array([y.min() for y in ys])
    span = np.maximum(high - low, 1e-9 * np.maximum(1.0, np.abs(high)))
    log_scale = math.log10(max(span.max(), np.abs(high).max()))
    log_n0_upper = np.log10([max(n.max(), 1.0) for n in ns]) + 3
    s_range = np.array([s_max_bounds(y, ceiling) for y in ys])
    lower = np.concatenate([[log_scale - 6, ALPHA_BOUNDS[0]], s_range[:, 0], np.zeros(count)])
    upper = np.concatenate([[log_scale + 12, ALPHA_BOUNDS[1]], s_range[:, 1], log_n0_upper])
    n_first = np.array([n.min() for n in ns])
    first = np.array([y[n == n.min()].mean() for n, y in zip(ns, ys)])
    typical = np.array([np.exp(np.log(np.maximum(n, 1.0)).mean()) for n in ns])
    starts = []
    for alpha, headroom, scale in itertools.product((0.3, 0.8, 1.5), (0.05, 0.5), (0.1, 1.0, 5.0)):
        s_max = np.minimum(high + headroom * span, s_range[:, 1])
        n0 = np.maximum(scale * typical, 1.0)
        a = np.median((s_max - first) / decay(form, n_first / n0, alpha))
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


def _bootstrap(
    model, n, errors, fitted, index, theta, bounds, n_bootstrap, rng, languages
) -> np.ndarray:
    """Refit on fitted + resampled residuals (drawn within each language): (B, languages, 4)."""
    count, dof = len(languages), len(n) - len(theta)
    if dof <= 0 and n_bootstrap:
        warnings.warn(
            f"{languages}: as many data points as parameters, the fit is exact "
            "and its bootstrap band has zero width",
            stacklevel=4,
        )
    centred = [
        errors[index == position] - errors[index == position].mean() for position in range(count)
    ]
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
