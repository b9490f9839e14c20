"""How often the scaling fit's 95% intervals cover the true law's parameters, and how wide they are.

    python benchmarks/scaling_coverage.py                   # 1000 data sets, profile: ~7 min on 2 cores
    python benchmarks/scaling_coverage.py --methods profile bootstrap  # beside the old

Data sets are drawn from known laws (:data:`SCENARIOS`, both forms, one held at a metric's
maximum of 100) at 8 sizes, several seeds per size (independent Gaussian noise per point),
fitted with :func:`fit_scaling` in the true form as the package fits a sweep (all seeds'
points), and each parameter's interval is checked for containing the truth:
``profile`` (the default, profile likelihood) against ``bootstrap`` (the residual bootstrap's
percentiles, the method before it). Coverage is reported beside the median interval width, each relative
to the true value, so that a method cannot buy coverage with width unnoticed. The binomial
standard error of a coverage of 95% over N data sets is sqrt(0.95 * 0.05 / N): 3.1 points at
N = 50, 1.5 at the default's 200 a scenario, which is why a scenario gets that many. Each data set is also fitted with ``form="auto"``, and the share of data sets where it
picks the true form is reported.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from lightning_xllama.scaling.fit import fit_scaling
from lightning_xllama.scaling.forms import Form, law_curve
from lightning_xllama.scaling.law import LanguageFit

PARAMETERS = ("s_max", "a", "alpha", "n0")


@dataclass(frozen=True)
class Scenario:
    """A true law, the sizes it is measured at and the noise of one measurement."""

    name: str
    s_max: float
    a: float
    alpha: float
    n0: float
    sizes: tuple[int, ...]
    noise: float
    form: Form = "power"
    ceiling: float = math.inf
    """The metric's maximum the fit holds S_max to."""

    @property
    def truth(self) -> tuple[float, float, float, float]:
        return self.s_max, self.a, self.alpha, self.n0


SCENARIOS = (
    # a high-resource, English-like language: BLEU-like units, saturating inside the sizes
    Scenario("ro-like", 34.0, 30.0, 0.6, 3000.0, tuple(1000 * 2**k for k in range(8)), 0.8),
    # a distant language: slower, later returns; not yet flat at the largest size
    Scenario("far-like", 24.0, 22.0, 0.4, 8000.0, tuple(1000 * 2**k for k in range(8)), 0.8),
    # the synthetic world's scale: chrF++ from tens to thousands of pairs, noisier
    Scenario("synthetic-like", 62.0, 55.0, 1.0, 150.0, tuple(16 * 2**k for k in range(8)), 1.5),
    # the science world's chrF++: slow, then closing the gap to the metric's maximum fast
    Scenario(
        "science-world-like",
        100.0,
        75.0,
        1.2,
        1500.0,
        tuple(25 * 2**k for k in range(8)),
        2.5,
        "stretched_exp",
        100.0,
    ),
    # a stretched exponential whose returns fade slowly (alpha < 1), not saturated at the top
    Scenario(
        "stretched-slow",
        40.0,
        30.0,
        0.6,
        5000.0,
        tuple(1000 * 2**k for k in range(8)),
        0.8,
        "stretched_exp",
    ),
)


def simulate(scenario: Scenario, seeds: int, rng: np.random.Generator) -> dict:
    """One data set: every size measured ``seeds`` times with independent noise."""
    n = np.repeat(np.array(scenario.sizes, dtype=float), seeds)
    y = law_curve(scenario.form, n, *scenario.truth)
    y = np.minimum(y + scenario.noise * rng.standard_normal(len(n)), scenario.ceiling)
    return {"x": (n, y)}


def check_dataset(task: tuple) -> tuple[str, dict[str, dict]]:
    """Fit data set ``index`` of one scenario with each method: per method, whether each
    parameter's interval covers the truth and its width relative to the truth; with the first
    method, whether ``form="auto"`` picks the true form. Its noise is drawn from
    (seed, scenario, index) alone, so the result does not depend on the worker that runs it."""
    scenario_index, index, seeds, resamples, methods, level, seed = task
    scenario = SCENARIOS[scenario_index]
    points = simulate(scenario, seeds, np.random.default_rng([seed, scenario_index, index]))
    truth = np.array(scenario.truth)
    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bound hits and failed refits are counted
        for method in methods:
            fit = fit_scaling(
                points,
                "score",
                n_bootstrap=resamples,
                seed=index,
                level=level,
                intervals=method,
                form=scenario.form,
                ceiling=scenario.ceiling,
            )
            low, high = parameter_intervals(fit.languages["x"], level)
            found[method] = {
                "covered": (low <= truth) & (truth <= high),
                "width": (high - low) / truth,
            }
        auto = fit_scaling(points, "score", n_bootstrap=0, form="auto", ceiling=scenario.ceiling)
    found[methods[0]]["auto_right"] = auto.languages["x"].model == scenario.form
    return scenario.name, found


def run(
    datasets: int,
    seeds: int,
    resamples: int,
    methods: list[str],
    level: float,
    seed: int,
    workers: int = 1,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (scenario, method): covered (bool) and relative width per data set and parameter."""
    per_scenario = max(1, datasets // len(SCENARIOS))
    tasks = [
        (scenario_index, index, seeds, resamples, tuple(methods), level, seed)
        for scenario_index in range(len(SCENARIOS))
        for index in range(per_scenario)
    ]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            checked = list(pool.map(check_dataset, tasks, chunksize=8))
    else:
        checked = [check_dataset(task) for task in tasks]
    results: dict[tuple[str, str], dict[str, list]] = {}
    for name, found in checked:
        for method, values in found.items():
            entry = results.setdefault((name, method), {})
            for key, value in values.items():
                entry.setdefault(key, []).append(value)
    return {key: {k: np.array(v) for k, v in entry.items()} for key, entry in results.items()}


def parameter_intervals(law: LanguageFit, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per parameter: the profile's, or the bootstrap draws' quantiles."""
    if law.intervals:
        return np.array([law.intervals[name] for name in PARAMETERS]).T
    draws = np.array(law.bootstrap)
    return np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)


def table(results: dict, methods: list[str]) -> list[str]:
    """Markdown rows: coverage and median relative width per parameter, per scenario and overall."""
    lines = [
        "| scenario | method | data sets | "
        + " | ".join(f"{p} coverage | {p} width" for p in PARAMETERS)
        + " | auto picks the true form |",
        "|---|---|---|" + "---|---|" * len(PARAMETERS) + "---|",
    ]
    names = [s.name for s in SCENARIOS] + ["all"]
    for name in names:
        for method in methods:
            keys = [k for k in results if k[1] == method and (name == "all" or k[0] == name)]
            covered = np.concatenate([results[k]["covered"] for k in keys])
            width = np.concatenate([results[k]["width"] for k in keys])
            cells = " | ".join(
                f"{covered[:, j].mean():.1%} | {np.median(width[:, j]):.3f}"
                for j in range(len(PARAMETERS))
            )
            picks = [results[k]["auto_right"] for k in keys if "auto_right" in results[k]]
            right = f"{np.concatenate(picks).mean():.1%}" if picks else ""
            lines.append(f"| {name} | {method} | {len(covered)} | {cells} | {right} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets",
        type=int,
        default=1000,
        help="split evenly over scenarios (200 each: a coverage's standard error 1.5 points)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="measurements per size")
    parser.add_argument(
        "--resamples", type=int, default=60, help="refits per bootstrap (the old method only)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["profile"], choices=["profile", "bootstrap"]
    )
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes fitting data sets"
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    start = time.perf_counter()
    results = run(
        args.datasets,
        args.seeds,
        args.resamples,
        args.methods,
        args.level,
        args.seed,
        args.workers,
    )
    print(
        f"coverage of {args.level:.0%} intervals; width = median (high - low) / true value; "
        f"{args.seeds} seeds x 8 sizes per data set, {args.resamples} bootstrap resamples"
    )
    print("\n".join(table(results, args.methods)))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
