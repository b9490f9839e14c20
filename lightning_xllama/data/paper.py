"""``paper: true`` on the data modules: the data side of the paper's run (x-LLM ``train.py`` and
``data/translation/translation.py``), where the package's defaults differ.

Each setting below is ``None`` by default in the data modules, meaning "the mode's value": the
package's default, or with ``paper: true`` the paper's. A value the user gives that contradicts
``paper: true`` is refused, never silently replaced.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from lightning_xllama.data.encoding import OVERFLOWS
from lightning_xllama.prompts import check_instruction_rule, check_template

PACKAGE_DEFAULTS: dict[str, Any] = {
    "val_examples_per_stream": 64,
    "overflow": "truncate",
    "template": "alpaca",
    "translation_instructions": "package",
    "strip_pairs": False,
    "use_fast_tokenizer": True,
}
"""The data modules' values of the settings :func:`resolve_paper_settings` resolves, without
``paper: true`` (``val_examples_per_stream`` is 0 when a ``val_file`` is given)."""

PAPER_SETTINGS: dict[str, tuple[Any, str]] = {
    "val_examples_per_stream": (0, "no validation examples taken from the training data"),
    "overflow": ("mask", "a prompt of max_length tokens or more is kept with every label masked"),
    "translation_instructions": ("official", "the 33 official instructions, by line index"),
    "strip_pairs": (True, "parallel lines stripped of surrounding whitespace"),
    "use_fast_tokenizer": (False, "the slow tokenizer, use_fast=False"),
}
"""What ``paper: true`` sets, and what that is in the paper's run: a user's other value for one of
these is refused."""

PAPER_TEMPLATE = "alpaca_official"
"""The template ``paper: true`` uses unless one is given (the paper's prompt)."""


def resolve_paper_settings(
    owner: str, paper: bool, given: Mapping[str, Any], val_file: Optional[str] = None
) -> dict[str, Any]:
    """The value in force of each of :data:`PACKAGE_DEFAULTS`' settings, from ``given`` (None:
    unset) and ``paper``.

    Raises a ValueError naming both settings when ``paper`` is on and a given value contradicts
    what it sets (:data:`PAPER_SETTINGS`), and one naming the setting for an unknown value.
    """
    if not isinstance(paper, bool):
        raise ValueError(f"{owner}: paper must be true or false, got {paper!r}")
    resolved = {}
    for name, default in PACKAGE_DEFAULTS.items():
        value = given.get(name)
        if paper and name in PAPER_SETTINGS:
            official, meaning = PAPER_SETTINGS[name]
            if value is not None and value != official:
                raise ValueError(
                    f"{owner}: paper: true sets {name}: {_yaml(official)} ({meaning}, as the "
                    f"paper's run), but {name} is {_yaml(value)}: set {name} to {_yaml(official)} "
                    "or null, or set paper: false"
                )
            value = official
        elif value is None:
            if name == "template" and paper:
                value = PAPER_TEMPLATE
            elif name == "val_examples_per_stream" and val_file is not None:
                value = 0
            else:
                value = default
        resolved[name] = value
    if resolved["overflow"] not in OVERFLOWS:
        raise ValueError(
            f"{owner}: overflow must be one of {OVERFLOWS}, got {resolved['overflow']!r}"
        )
    check_template(resolved["template"], f"{owner}: template")
    check_instruction_rule(
        resolved["translation_instructions"], f"{owner}: translation_instructions"
    )
    for name in ("strip_pairs", "use_fast_tokenizer"):
        if not isinstance(resolved[name], bool):
            raise ValueError(f"{owner}: {name} must be true or false, got {resolved[name]!r}")
    return resolved


def _yaml(value: Any) -> str:
    """A value as a config writes it (``true``, ``mask``, ``64``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
