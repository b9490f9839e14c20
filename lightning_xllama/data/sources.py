"""Readers for the files users bring: Alpaca instruction data and aligned parallel text.

Every reader validates as it reads and names the file and the line or record of any problem:
a corpus of millions of lines must not fail hours later, nor be silently shortened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

INSTRUCTION_FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Example:
    """One training example before templating: an Alpaca record plus where it came from."""

    instruction: str
    input: str
    output: str
    task: str = "instruction"
    lang: str = "en"


class DataFormatError(ValueError):
    """A data file does not have the expected format; the message names file and line."""


def _check_exists(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


def read_lines(path: str | Path) -> Iterator[str]:
    """Lines without their newline, decoded as UTF-8 with the failing line named."""
    path = _check_exists(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}:{number}: not valid UTF-8 ({err.reason})") from None


def _validate_record(record: object, where: str, require_output: bool = True) -> dict:
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object with fields {INSTRUCTION_FIELDS}")
    for name in ("instruction", "output") if require_output else ("instruction",):
        if name not in record:
            raise DataFormatError(f"{where}: missing field {name!r} (expected {INSTRUCTION_FIELDS})")
    for name in INSTRUCTION_FIELDS:
        value = record.get(name, "")
        if not isinstance(value, str):
            raise DataFormatError(
                f"{where}: field {name!r} must be a string, got {type(value).__name__}"
            )
    return record


def read_instructions(path: str | Path, lang: str = "en", require_output: bool = True) -> Iterator[Example]:
    """Alpaca records from a JSON list (``.json``) or one object per line (``.jsonl``).

    ``require_output=False`` reads prompts to answer (``predict``), whose output is unknown.
    """
    path = _check_exists(path)
    if path.suffix == ".jsonl":
        records = ((number, line) for number, line in enumerate(read_lines(path), start=1))
        count = 0
        for number, line in records:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            count += 1
            yield _to_example(_validate_record(record, f"{path}:{number}", require_output), lang)
        if count == 0:
            raise DataFormatError(f"{path}: empty file, expected Alpaca records")
        return
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not valid UTF-8 at byte {err.start}") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(records, list) or not records:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of Alpaca records")
    for index, record in enumerate(records):
        yield _to_example(_validate_record(record, f"{path}: record {index}", require_output), lang)


def _to_example(record: dict, lang: str) -> Example:
    return Example(record["instruction"], record.get("input", ""), record.get("output", ""), "instruction", lang)


def read_parallel(prefix: str | Path, src_lang: str, tgt_lang: str) -> list[tuple[str, str]]:
    """Aligned pairs from ``{prefix}.{src_lang}`` and ``{prefix}.{tgt_lang}`` (Moses/OPUS layout).

    Files of different lengths are an error (never paired silently); a line that is empty on
    either side is an error too, since it means the files are misaligned or damaged.
    """
    src_path, tgt_path = Path(f"{prefix}.{src_lang}"), Path(f"{prefix}.{tgt_lang}")
    src, tgt = list(read_lines(src_path)), list(read_lines(tgt_path))
    if len(src) != len(tgt):
        raise DataFormatError(
            f"parallel files differ in length: {src_path} has {len(src)} lines, "
            f"{tgt_path} has {len(tgt)}"
        )
    if not src:
        raise DataFormatError(f"parallel files are empty: {src_path}, {tgt_path}")
    for number, (s, t) in enumerate(zip(src, tgt), start=1):
        if not s.strip() or not t.strip():
            empty = src_path if not s.strip() else tgt_path
            raise DataFormatError(f"{empty}:{number}: empty line in a parallel corpus")
    return list(zip(src, tgt))
