"""The results table: one row per (run, metric), written by ``scaling sweep`` and read by ``scaling fit``.

One schema, :data:`RESULT_FIELDS`, for both: a sweep writes every column; a table made by hand
needs only :data:`REQUIRED_FIELDS` (``seed`` and the rest are optional when reading).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Union

import numpy as np

RESULT_FIELDS = (
    "language",
    "pairs",
    "metric",
    "score",
    "seed",
    "steps",
    "subset",
    "run",
    "seconds",
)
"""Columns of a results table: ``pairs`` is the count the law is fitted on (in ``scaling sweep``'s
tables what the run trained on: the subset less the pairs held out for the validation loss),
``subset`` the first-n pairs asked for."""
REQUIRED_FIELDS = RESULT_FIELDS[:4]
"""Columns every results table needs; a fit reads only these (and checks ``seed`` when present)."""

Points = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per language: (pairs, scores) arrays of equal length."""


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
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise ValueError(
                f"{path}, line 1: missing column(s) {missing}; expected a header with "
                f"{','.join(REQUIRED_FIELDS)} (and optionally seed), got {header}"
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


def seed_spread(
    n: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct size: (sizes, mean score, sd across seeds, runs); sd is NaN for a single run.

    The fit uses every seed's point; this is the spread it is shown beside.
    """
    sizes, inverse, runs = np.unique(n, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / runs
    squares = np.bincount(inverse, weights=(y - means[inverse]) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.where(runs > 1, np.sqrt(squares / (runs - 1)), np.nan)
    return sizes, means, sd, runs


def _text(row: dict, column: str, where: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise ValueError(
            f"{where}: empty {column!r}; expected a value in every column of {REQUIRED_FIELDS}"
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


def finished_runs(results: str | Path) -> set[str]:
    """Names of the runs already in a results table (checked to have a sweep's columns)."""
    results = Path(results)
    if not results.is_file() or results.stat().st_size == 0:
        return set()
    with results.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != RESULT_FIELDS:
            raise ValueError(
                f"{results}, line 1: header {reader.fieldnames} is not a sweep's {list(RESULT_FIELDS)}; "
                "append to a results table a sweep wrote, or give a new --results file"
            )
        return {row["run"] for row in reader}


def append_results(results: str | Path, rows: list[dict]) -> None:
    """Append rows to the results CSV (header written when the file is new)."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    new = not results.is_file() or results.stat().st_size == 0
    if not new:
        with results.open("rb") as handle:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                raise ValueError(
                    f"{results}: the last line has no line end; appending would join two rows"
                )
    with results.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
