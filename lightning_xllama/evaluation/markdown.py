"""Markdown for the ``evaluate`` report and the sample tables written next to the outputs."""

from __future__ import annotations

from typing import Any, Sequence


def cell_text(value: Any) -> str:
    """One table cell as one line of text: floats to 4 digits, lists joined by `` | ``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " | ".join(map(cell_text, value))
    return " ".join(str(value).split())


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table of :func:`cell_text` cells, with ``|`` escaped."""

    def cell(value: Any) -> str:
        return cell_text(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
