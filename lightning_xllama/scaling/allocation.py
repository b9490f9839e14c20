"""Splitting a budget of parallel pairs across languages from their fitted laws (``allocation.yaml``).

The file is read back by :func:`lightning_xllama.data.allocation.read_allocation`.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import yaml

from lightning_xllama.data.allocation import ALLOCATION_HEADER
from lightning_xllama.scaling.law import ScalingFit

MAX_BRUTE_FORCE = 2_000_000
"""Most allocations the brute-force search will enumerate."""


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


def _warn_below_data(fit: ScalingFit, allocation: Allocation) -> None:
    """Warn where a language gets fewer pairs than its law was fitted on: the law's prediction
    there is an extrapolation below the data, the region where a fit is least determined, and an
    optimiser that trusts it can starve a language for a predicted gain of a fraction of a point."""
    for language, count in allocation.counts.items():
        pairs = fit.languages[language].pairs
        if pairs and count < min(pairs):
            warnings.warn(
                f"language {language!r} gets {count} pairs, fewer than the smallest count its law "
                f"was fitted on ({min(pairs):g}): its predicted {fit.metric} there "
                f"({allocation.scores[language]:.1f}) is an extrapolation below the data; pass "
                f"minimums={{{language!r}: {math.ceil(min(pairs))}}} to keep it within the data",
                stacklevel=3,
            )


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
    search: Literal["auto", "greedy", "dynamic", "brute_force"] = "auto",
    if_caps_short: Literal["error", "use_all"] = "error",
) -> Allocation:
    """Split ``budget`` pairs across languages to maximise the summed or the worst predicted score.

    ``greedy`` hands out ``step`` pairs at a time to the language that gains most (``sum``) or
    scores lowest (``min``): fast, and with concave laws optimal but for the last, partial
    step. A law that starts slow and then speeds up (a stretched exponential with alpha > 1)
    can look worse than it is after one step, and there the greedy can be far off.
    ``dynamic`` finds the best allocation on each language's step grid (the space
    ``brute_force`` enumerates) by dynamic programming over the pairs spent, for laws of any
    shape; its cost grows as the languages squared times each one's grid counts times the
    budget in pairs (two passes for ``min``).
    ``auto`` (the default) takes ``greedy`` when every law is concave and ``dynamic``
    otherwise. ``brute_force`` exists to check the others on small cases.
    """
    if search not in ("auto", "greedy", "dynamic", "brute_force"):
        raise ValueError(
            f"search must be 'auto', 'greedy', 'dynamic' or 'brute_force', got {search!r}"
        )
    if objective not in ("sum", "min"):
        raise ValueError(f"objective must be 'sum' or 'min', got {objective!r}")
    if budget < 0 or (step is not None and step <= 0):
        raise ValueError(
            f"budget must be >= 0 and step > 0 pairs, got budget {budget}, step {step}"
        )
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
            raise ValueError(
                f"{message}: infeasible; lower the budget or pass if_caps_short='use_all'"
            )
        warnings.warn(f"{message}: allocating every pair that exists", stacklevel=2)
        budget = sum(caps.values())
    step = step or max(1, budget // 1000)

    def score(language: str, n: int) -> float:
        return float(fit.languages[language].curve(n))

    if search == "auto":
        concave = all(fit.languages[language].concave for language in languages)
        search = "greedy" if concave else "dynamic"
    search_function = {"greedy": _greedy, "dynamic": _dynamic, "brute_force": _brute_force}[search]
    counts = search_function(score, languages, budget, caps, minimums, step, objective)
    uniform = _uniform_split(languages, budget, caps, minimums)
    allocation = Allocation(
        fit.metric,
        objective,
        counts,
        {language: score(language, count) for language, count in counts.items()},
        uniform,
        {language: score(language, count) for language, count in uniform.items()},
    )
    _warn_below_data(fit, allocation)
    return allocation


def _per_language(
    values: Optional[dict[str, int]], languages: list[str], what: str, default: int
) -> dict[str, int]:
    values = values or {}
    unknown = sorted(set(values) - set(languages))
    if unknown:
        raise ValueError(
            f"{what} name {unknown}, which are not among the languages allocated {languages}"
        )
    for language, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"{what}[{language!r}] must be a non-negative whole number, got {value!r}"
            )
    return {language: values.get(language, default) for language in languages}


def _greedy(score, languages, budget, caps, minimums, step, objective) -> dict[str, int]:
    counts = dict(minimums)
    remaining = budget - sum(counts.values())

    def increment(language: str) -> int:
        return min(step, caps[language] - counts[language], remaining)

    def priority(language: str) -> tuple:
        now = counts[language]
        gain = (score(language, now + increment(language)) - score(language, now)) / increment(
            language
        )
        # "min": raise the lowest score among languages that can still improve
        return (gain,) if objective == "sum" else (gain > 0, -score(language, now), gain)

    while remaining > 0:
        chosen = max(
            (language for language in languages if counts[language] < caps[language]), key=priority
        )
        given = increment(chosen)
        counts[chosen] += given
        remaining -= given
    return counts


def _dynamic(score, languages, budget, caps, minimums, step, objective) -> dict[str, int]:
    """The best allocation of :func:`_brute_force`'s space for laws of any shape, by dynamic
    programming instead of enumeration: the best sum, or the best minimum and then, among the
    allocations that reach it, the best sum (the brute force's tie-break)."""
    score = functools.cache(score)  # each language is asked the same counts once per pass
    search = functools.partial(_grid_search, score, languages, budget, caps, minimums, step)
    if objective == "sum":
        return search(np.add, 0.0)
    fairest = search(np.minimum, np.inf)
    floor = min(score(language, count) for language, count in fairest.items())
    return search(np.add, 0.0, floor)


def _grid_search(
    score, languages, budget, caps, minimums, step, combine, start, floor=-math.inf
) -> dict[str, int]:
    """The allocation on the step grid with the largest ``combine`` (``np.add``: sum,
    ``np.minimum``: minimum) of the scores, using only counts that score ``floor`` or more.

    Each language but one takes a count of its grid (:func:`_grid`) and the one left takes the
    rest, as in the brute force. For each choice of that language, ``best[s]`` is the best value
    of the others with ``s`` pairs spent: one pass per language over its grid counts, vectorised
    over ``s``; then every ``s`` whose rest fits the last language is scored.
    """
    found, found_value = None, -math.inf
    for rest_taker in languages:
        others = [language for language in languages if language != rest_taker]
        best = np.full(budget + 1, -np.inf)
        best[0] = start
        picks = []
        for language in others:
            new, pick = np.full(budget + 1, -np.inf), np.zeros(budget + 1, dtype=np.int64)
            for count in _grid(minimums[language], caps[language], step):
                if count > budget:
                    break
                gained = score(language, count)
                if gained < floor:
                    continue
                value = np.full(budget + 1, -np.inf)
                value[count:] = combine(best[: budget + 1 - count], gained)
                better = value > new
                new[better], pick[better] = value[better], count
            best = new
            picks.append(pick)
        for spent in np.flatnonzero(best > -np.inf):
            rest = budget - int(spent)
            if not minimums[rest_taker] <= rest <= caps[rest_taker]:
                continue
            last = score(rest_taker, rest)
            value = float(combine(best[spent], last))
            if last >= floor and value > found_value:
                counts, left = {rest_taker: rest}, int(spent)
                for language, pick in zip(reversed(others), reversed(picks)):
                    counts[language] = int(pick[left])
                    left -= counts[language]
                found, found_value = {language: counts[language] for language in languages}, value
    if found is None:
        raise ValueError(f"no allocation on the step grid spends the budget {budget} exactly")
    return found


def _brute_force(score, languages, budget, caps, minimums, step, objective) -> dict[str, int]:
    """Every allocation on the step grid; best objective, then best sum.

    Each language takes its minimum, the minimum plus whole steps, or its cap, and one language
    takes the rest. The greedy ends on exactly such an allocation (it stops at caps, and its last
    increment may be a partial step), so this enumeration is a true check of it.
    """
    grids = {language: _grid(minimums[language], caps[language], step) for language in languages}
    size = sum(
        math.prod(len(grids[other]) for other in languages if other != rest_taker)
        for rest_taker in languages
    )
    if size > MAX_BRUTE_FORCE:
        raise ValueError(
            f"brute force would enumerate {size} allocations (limit {MAX_BRUTE_FORCE}); "
            "use search='greedy' or a larger step"
        )
    score = functools.cache(score)  # each language visits the same few counts many times
    best, best_value = None, None
    for rest_taker in languages:
        others = [language for language in languages if language != rest_taker]
        for head in itertools.product(*(grids[language] for language in others)):
            rest = budget - sum(head)
            if not minimums[rest_taker] <= rest <= caps[rest_taker]:
                continue
            chosen = {**dict(zip(others, head)), rest_taker: rest}
            counts = {language: chosen[language] for language in languages}
            scores = {language: score(language, count) for language, count in counts.items()}
            value = (_objective(scores, objective), sum(scores.values()))
            if best is None or value > best_value:
                best, best_value = counts, value
    return best


def _grid(minimum: int, cap: int, step: int) -> list[int]:
    """A language's counts on the step grid: from its minimum in whole steps, and its cap."""
    return sorted({*range(minimum, cap + 1, step), cap})


def _uniform_split(
    languages: list[str], budget: int, caps: dict[str, int], minimums: dict[str, int]
) -> dict[str, int]:
    """The even split: one common level clipped to each language's [minimum, cap].

    What a capped language cannot take goes to the others, so the budget is spent in full.
    """

    def at_level(level: int) -> dict[str, int]:
        return {
            language: min(max(level, minimums[language]), caps[language]) for language in languages
        }

    low, high = 0, max(caps.values())
    while low < high:  # the highest level whose clipped counts still fit the budget
        middle = (low + high + 1) // 2
        low, high = (
            (middle, high) if sum(at_level(middle).values()) <= budget else (low, middle - 1)
        )
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
        + yaml.safe_dump(
            {"streams": streams}, sort_keys=False, default_flow_style=None
        )  # a line each
        + yaml.safe_dump(totals, sort_keys=False)
    )
    return path
