"""The README's "What differs from the paper's code" table: every row says how to get the paper's
behaviour with settings that exist, resolved against the real signatures, with values they accept.

A setting is written in backticks as ``Owner.argument: value`` (``Owner.argument`` for a free
value; a dotted path reaches into a nested argument, as in
``TranslationEvaluation.generation.max_new_tokens``) or ``evaluate --argument value``; an owner is
``XLlamaModule``, a data module, a callback, a strategy or ``evaluate``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import pytest

import lightning_xllama.callbacks as callbacks
import lightning_xllama.data as data
import lightning_xllama.strategies as strategies
from lightning_xllama.commands.evaluate import evaluate
from lightning_xllama.training.module import XLlamaModule

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## What differs from the paper's code"
HEADER = [
    "item",
    "the paper's code",
    "package default",
    "the paper's behaviour",
    "why the default differs",
]
SETTING_COLUMN = HEADER.index("the paper's behaviour")

OWNERS: dict[str, Any] = {
    "XLlamaModule": XLlamaModule,
    "evaluate": evaluate,
    **{name: getattr(data, name) for name in data.__all__},
    **{name: getattr(callbacks, name) for name in callbacks.__all__},
    **{name: getattr(strategies, name) for name in strategies.__all__},
}
SETTING = re.compile(
    r"^(?:(?P<owner>\w+)\.(?P<path>[\w.]+)(?::\s*(?P<value>\S.*))?"
    r"|evaluate --(?P<flag>[\w.]+)(?:\s+(?P<flag_value>\S.*))?)$"
)


def table_rows() -> list[list[str]]:
    """The cells of the section's first table, the header row first."""
    text = README.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"README.md has no single section {SECTION!r}"
    lines = text.split(SECTION, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not all(set(cell) <= set("-: ") for cell in cells):  # not the separator row
            rows.append(cells)
    return rows


def parameters(target: Any) -> dict[str, tuple[inspect.Parameter, Any]]:
    """``target``'s arguments and their type hints: a function's, a dataclass's fields, or a
    class's ``__init__`` and, where it passes ``**kwargs`` on, its base classes' ``__init__``."""
    if not inspect.isclass(target) or dataclasses.is_dataclass(target):
        return _with_hints(target, target)
    found: dict[str, tuple[inspect.Parameter, Any]] = {}
    for cls in target.__mro__:
        if "__init__" not in vars(cls) or cls is object:
            continue
        own = _with_hints(cls.__init__, cls)
        found.update({k: v for k, v in own.items() if k != "self" and k not in found})
        if not any(p.kind is p.VAR_KEYWORD for p, _ in own.values()):
            break
    return found


def _with_hints(function: Any, owner: Any) -> dict[str, tuple[inspect.Parameter, Any]]:
    hints = typing.get_type_hints(function if not inspect.isclass(function) else owner)
    return {
        name: (parameter, hints.get(name, parameter.annotation))
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def alternatives(hint: Any) -> list[Any]:
    """The types a hint allows, ``Optional`` and ``Union`` unpacked."""
    if get_origin(hint) in (Union, types.UnionType):
        return [t for arg in get_args(hint) for t in alternatives(arg) if t is not type(None)]
    return [hint]


def accepts(hint: Any, value: str) -> bool:
    """Whether a YAML ``value`` fits ``hint`` (literals, booleans and whole numbers are checked;
    other types take any text)."""
    for option in alternatives(hint):
        if get_origin(option) is Literal:
            if value in [str(v) for v in get_args(option)]:
                return True
        elif option is bool:
            if value in ("true", "false"):
                return True
        elif option is int:
            if value.isdigit():
                return True
        else:
            return True
    return False


def resolve(owner: str, path: str, value: Optional[str]) -> Optional[str]:
    """None when ``owner`` has the argument ``path`` and it accepts ``value``, else why not."""
    if owner not in OWNERS:
        return f"{owner!r} is not XLlamaModule, a data module, a callback, a strategy or evaluate"
    target, hint = OWNERS[owner], None
    for depth, name in enumerate(path.split(".")):
        if depth:  # into a nested argument: the class its hint names
            nested = [t for t in alternatives(hint) if inspect.isclass(t)]
            if not nested:
                return f"{owner}.{'.'.join(path.split('.')[:depth])} has no nested arguments"
            target = nested[0]
        found = parameters(target)
        if name not in found:
            return f"{getattr(target, '__name__', target)} has no argument {name!r}"
        hint = found[name][1]
    if value is not None and not accepts(hint, value):
        return f"{owner}.{path} does not accept {value!r} (its type: {hint})"
    return None


ROWS = table_rows()


def test_the_table_has_the_agreed_columns_and_rows():
    assert ROWS[0] == HEADER
    assert len(ROWS) > 10
    for row in ROWS[1:]:
        assert len(row) == len(HEADER), f"row {row[0]!r} has {len(row)} cells, not {len(HEADER)}"
        assert all(row), f"row {row[0]!r} has an empty cell"


@pytest.mark.parametrize("row", ROWS[1:], ids=[row[0] for row in ROWS[1:]])
def test_each_row_names_settings_that_exist(row):
    references = re.findall(r"`([^`]+)`", row[SETTING_COLUMN])
    assert references, f"row {row[0]!r} names no setting"
    for reference in references:
        match = SETTING.match(reference)
        assert match, f"row {row[0]!r}: {reference!r} is not `Owner.argument: value`"
        if match["flag"]:
            problem = resolve("evaluate", match["flag"], match["flag_value"])
        else:
            problem = resolve(match["owner"], match["path"], match["value"])
        assert problem is None, f"row {row[0]!r}: {reference!r}: {problem}"


def test_a_setting_that_does_not_exist_is_caught():
    assert resolve("XLlamaModule", "loss_normalisation", "micro_batch_mean") is None
    assert "no argument 'loss_normalization'" in resolve("XLlamaModule", "loss_normalization", None)
    assert "does not accept 'mean'" in resolve("XLlamaModule", "loss_normalisation", "mean")
    assert resolve("TranslationEvaluation", "generation.max_new_tokens", "512") is None
    assert resolve("evaluate", "paper.flores_max_new_tokens", "512") is None
    assert "not XLlamaModule" in resolve("Trainer", "max_steps", "2")
