"""What the CLI's ``scaling`` subcommands call: ``sweep``, ``fit`` and ``allocate``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from lightning_xllama.scaling.allocation import allocate, write_allocation
from lightning_xllama.scaling.fit import fit_scaling
from lightning_xllama.scaling.law import ScalingFit
from lightning_xllama.scaling.plots import plot_fits
from lightning_xllama.scaling.results import read_results


def fit_command(
    results: str,
    out: str,
    metric: str = "chrf_pp",
    shared_exponent: bool = False,
    n_bootstrap: int = 200,
    seed: int = 0,
    on_non_increasing: Literal["error", "flat"] = "error",
    intervals: Literal["profile", "bootstrap"] = "profile",
    form: Literal["power", "stretched_exp", "auto"] = "power",
    ceiling: Optional[float] = None,
) -> dict:
    """Fit the scaling law of each language to a results table; write fit.json and fit.png.

    Args:
        results: CSV results table with columns language,pairs,metric,score (and optionally seed).
        out: Folder that receives fit.json (the fitted laws) and fit.png (one panel per language).
        metric: Which metric of the table to fit (chrf_pp, bleu, comet...: the names `scaling sweep` and the
            evaluation callbacks log).
        shared_exponent: Fit all languages jointly with a shared A and alpha and a per-language
            similarity factor k = 1/n0; needs three data sizes per language instead of four.
        n_bootstrap: Bootstrap refits behind the bands of fits without profile intervals
            (0 for no bands).
        seed: Seed of the bootstrap resampling.
        on_non_increasing: What to do with a language whose scores do not grow with the pairs:
            stop with an error, or model it as a flat score and warn.
        intervals: ``profile``: profile-likelihood intervals for each language fitted alone on
            more than four points (coverage measured by benchmarks/scaling_coverage.py), the
            bootstrap elsewhere; ``bootstrap``: the residual bootstrap everywhere.
        form: The law's shape: ``power`` (the paper's, S_max - A (1 + n/n0)^-alpha),
            ``stretched_exp`` (S_max - A exp(-(n/n0)^alpha), whose gap can close faster and
            faster), or ``auto``: per language the one with the smaller squared error.
        ceiling: Upper bound of S_max. Default: the metric's maximum (100 for chrf_pp, chrf,
            bleu, spbleu, exact_match), none for other metrics; ``.inf`` (YAML's infinity, also on the
            command line) lifts it.

    Returns:
        Paths of the written files and the fitted parameters per language.
    """
    points = read_results(results, metric)
    fit = fit_scaling(
        points,
        metric,
        shared_exponent,
        n_bootstrap,
        seed,
        on_non_increasing,
        intervals=intervals,
        form=form,
        ceiling=ceiling,
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    fit_path, plot_path = fit.save(folder / "fit.json"), plot_fits(fit, folder / "fit.png")
    print(f"{'language':<16}{'model':>14}{'S_max':>10}{'A':>10}{'alpha':>8}{'n0':>12}{'R^2':>8}")
    for language, law in fit.languages.items():
        r2 = "n/a" if law.r2 is None else f"{law.r2:.3f}"
        print(
            f"{language:<16}{law.model:>14}{law.s_max:>10.3f}{law.a:>10.3f}"
            f"{law.alpha:>8.3f}{law.n0:>12.1f}{r2:>8}"
        )
        if law.intervals:
            print(
                f"{'':<16}{fit.level:>14.0%}"
                + "".join(
                    f"  {name} [{low:.4g}, {high:.4g}]"
                    for name, (low, high) in law.intervals.items()
                )
            )
    print(f"wrote {fit_path} and {plot_path}")
    return {
        "fit": str(fit_path),
        "plot": str(plot_path),
        "metric": metric,
        "languages": {
            language: {
                "model": law.model,
                "s_max": law.s_max,
                "a": law.a,
                "alpha": law.alpha,
                "n0": law.n0,
                "r2": law.r2,
                "n_range": list(law.n_range),
                "intervals": law.intervals,
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
    search: Literal["auto", "greedy", "dynamic", "brute_force"] = "auto",
) -> dict:
    """Split a budget of parallel pairs across languages from fitted laws; write allocation.yaml.

    Args:
        fit: fit.json written by `scaling fit`, or the folder holding it.
        budget: Total number of parallel pairs to spend.
        out: Folder that receives allocation.yaml (read by the MuIT data module).
        objective: Maximise the summed predicted score (sum) or the worst language's (min).
        caps: Pairs that exist per language; a language cannot get more. Default: no cap.
        minimums: Pairs each language must get at least. Default: 0.
        step: The allocation's granularity in pairs (each language's counts are multiples of
            it, but for caps and minimums). Default: budget / 1000.
        languages: Languages to allocate. Default: every language in the fit.
        direction: Translation direction of the parallel streams: English to X or X to English.
        if_caps_short: When the caps add up to less than the budget: stop with an error, or
            allocate every pair that exists and warn.
        search: ``greedy`` (fast; optimal for concave laws), ``dynamic`` (exact on the step
            grid for laws of any shape), ``auto``: greedy when every law is concave, else
            dynamic; ``brute_force`` enumerates (small cases only).

    Returns:
        The allocation file's path and the optimised and uniform counts, scores and totals.
    """
    fit_path = Path(fit) / "fit.json" if Path(fit).is_dir() else Path(fit)
    allocation = allocate(
        ScalingFit.load(fit_path),
        budget,
        objective,
        caps,
        minimums,
        step,
        languages,
        search,
        if_caps_short,
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_allocation(folder / "allocation.yaml", allocation, direction)
    metric = allocation.metric
    print(f"{'language':<16}{'uniform':>10}{metric:>9}{'optimised':>11}{metric:>9}")
    for language, count in allocation.counts.items():
        uniform = (
            f"{allocation.uniform_counts[language]:>10}{allocation.uniform_scores[language]:>9.2f}"
        )
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
            "counts": allocation.counts,
            "scores": allocation.scores,
            "predicted_total": allocation.predicted_total,
        },
        "uniform": {
            "counts": allocation.uniform_counts,
            "scores": allocation.uniform_scores,
            "predicted_total": allocation.uniform_total,
        },
    }


def scaling_commands() -> dict[str, object]:
    """The ``scaling`` subcommands by name (the sweep, which trains, is imported only here)."""
    from lightning_xllama.commands.sweep import sweep

    return {"sweep": sweep, "fit": fit_command, "allocate": allocate_command}
