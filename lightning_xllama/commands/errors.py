"""User errors in one line: the package's parsers and the rule for what is shown.

A user's mistake (a bad value, a missing file, an unknown config key) ends a command with one
``error:`` line and exit status 2; ``XLLAMA_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningArgumentParser

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)
"""Errors raised by the package's classes on bad settings or inputs, shown without a traceback."""


def _debug() -> bool:
    """``XLLAMA_DEBUG=1``: errors keep their traceback (and jsonargparse its full report)."""
    return os.environ.get("XLLAMA_DEBUG") == "1"


_PARSING: list[tuple[list[str], str]] = []
"""The arguments of the parse in progress and the folder it started in (jsonargparse changes to a
config file's folder while reading it)."""


class OneLineErrors:
    """A jsonargparse parser whose errors are one ``error:`` line instead of the usage of every
    option and the report of every union member tried: the key (``data.init_args.batch_size``),
    where it was given (a config file or the command line) and, for an unknown key, the closest
    valid ones. ``--help`` is unchanged."""

    def parse_args(self, args=None, *rest, **kwargs):
        outermost = not _PARSING  # jsonargparse parses subcommands and config files within it
        if outermost:
            _PARSING.append((list(sys.argv[1:] if args is None else args), os.getcwd()))
        try:
            return super().parse_args(args, *rest, **kwargs)
        finally:
            if outermost:
                _PARSING.clear()

    def error(self, message: str, ex: Optional[Exception] = None):
        if not self.exit_on_error or _debug():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        argv, cwd = _PARSING[0] if _PARSING else (sys.argv[1:], os.getcwd())
        line = parse_error_line(message, parser, argv, cwd)
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2)


class XLlamaArgumentParser(OneLineErrors, LightningArgumentParser):
    """The trainer commands' parser, with errors in one line."""


def _tool_parser_class():
    from jsonargparse import ArgumentParser

    class ToolArgumentParser(OneLineErrors, ArgumentParser):
        """The function commands' parser, with errors in one line."""

    return ToolArgumentParser


NOT_ACCEPTED = re.compile(
    r"does not accept option '([^']+)'|Option '([^']+)' is not accepted|"
    r"Key '([^']+)' is not expected"
)


def parse_error_line(message: str, parser, argv: list[str], cwd: str = ".") -> str:
    """jsonargparse's error ``message`` in one line (see :class:`OneLineErrors`)."""
    unrecognized = re.match(r"unrecognized arguments: (.*)", message.strip())
    if unrecognized:
        flags = [a.split("=", 1)[0][2:] for a in unrecognized.group(1).split() if a[:2] == "--"]
        if flags:
            return "; ".join(_unknown_key(flag, _parser_keys(parser), argv, cwd) for flag in flags)
    key, text, class_path = _first_leaf(message)
    found = NOT_ACCEPTED.search(text)
    if found:
        name = next(g for g in found.groups() if g)
        full = f"{key}.{name}" if key else name
        prefix = f"{key}." if key else ""
        known = (
            [prefix + n for n in _init_parameters(class_path)]
            if class_path
            else _parser_keys(parser)
        )
        return _unknown_key(full, known, argv, cwd)
    if key:
        source = _source(key, argv, cwd).strip()
        return f"{key} ({source}): {text}" if source else f"{key}: {text}"
    return " ".join(message.split())


def _first_leaf(message: str) -> tuple[str, str, Optional[str]]:
    """The first error of jsonargparse's nested report: (the key it is about, e.g.
    ``data.init_args.batch_size``; the error; the class_path it was checked against).
    Alternatives of a union that only say the value is not None are passed over."""
    stack: list[tuple[int, str, Optional[str]]] = []  # (indent, key part, class_path)
    for line in message.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" -"))
        text = stripped.lstrip("- ").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parser_key = re.fullmatch(r'Parser key "(.+)":', text)
        class_path = re.fullmatch(r"Problem with given class_path '(.+)':", text)
        if parser_key:
            stack.append((indent, parser_key.group(1), None))
        elif class_path:
            stack.append((indent, "init_args", class_path.group(1)))
        elif text and not text.startswith(
            (
                "Does not validate against",
                "Subtypes:",
                "Errors:",
                "Given value",
                "Expected a <class 'NoneType'>",
            )
        ):
            classes = [c for _, _, c in stack if c]
            return ".".join(part for _, part, _ in stack), text, (classes[-1] if classes else None)
    return "", " ".join(message.split()), None


def _unknown_key(key: str, known: list[str], argv: list[str], cwd: str) -> str:
    """``unknown key 'K' in FILE; did you mean: ...?`` (or ``unknown option '--K'`` when given on
    the command line), the closest of ``known`` by spelling."""
    source = _source(key, argv, cwd)
    flag = not source.startswith(" in ")
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if not close:  # by the last part alone: a long prefix drowns a short misspelling
        leaves = {k.rpartition(".")[2]: k for k in reversed(known)}
        leaf = key.rpartition(".")[2]
        close = [leaves[n] for n in difflib.get_close_matches(leaf, list(leaves), n=3)]
    dash = "--" if flag else ""
    text = f"unknown option '--{key}'" if flag else f"unknown key '{key}'{source}"
    if close:
        return f"{text}; did you mean: {', '.join(dash + k for k in close)}?"
    return f"{text}; --help lists the accepted keys"


def _parser_keys(parser) -> list[str]:
    """Every option of ``parser`` as a dotted key (``trainer.max_steps``)."""
    keys = {s[2:] for s in getattr(parser, "_option_string_actions", {}) if s[:2] == "--"}
    return sorted(keys - {"help", "config", "print_config"})


def _init_parameters(class_path: str) -> list[str]:
    """The init_args keys of the class at ``class_path``, as jsonargparse reads them (arguments
    passed on through ``**kwargs`` included)."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        parser = ArgumentParser()
        parser.add_class_arguments(
            getattr(importlib.import_module(module), name), fail_untyped=False
        )
    except Exception:  # an unimportable class: jsonargparse's own message names it
        return []
    return list(parser.get_defaults().keys())


def _source(key: str, argv: list[str], cwd: str) -> str:
    """`` on the command line`` when a flag of ``argv`` names ``key`` (flags override config
    files), `` in FILE`` when a ``--config`` file holds it, else nothing."""
    import yaml

    parts = key.split(".")
    flags = [a.split("=", 1)[0][2:] for a in argv if a[:2] == "--"]
    if any(f == key or f == parts[-1] or f.endswith("." + parts[-1]) for f in flags):
        return " on the command line"
    configs = [b for a, b in zip(argv, argv[1:]) if a in ("--config", "-c")]
    configs += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for config in reversed(configs):  # the last file given wins
        try:
            content = yaml.safe_load(Path(cwd, config).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if _holds(content, parts):
            return f" in {config}"
    return ""


def _holds(content, parts: list[str]) -> bool:
    """Whether YAML ``content`` has the key ``parts`` (``init_args`` optional, lists searched)."""
    if not parts:
        return True
    if isinstance(content, list):
        return any(_holds(item, parts) for item in content)
    if not isinstance(content, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head in content:
        return _holds(content[head], rest)
    return head == "init_args" and _holds(content, rest)


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err
