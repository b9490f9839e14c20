"""Readers for the files users bring: Alpaca instruction data and parallel corpora.

Every reader validates as it reads and names the file and the line or record of any problem:
a corpus of millions of lines must not fail hours later, nor be silently shortened. A byte that
is not UTF-8 is named by file, line and column; a UTF-8 byte-order mark at the start of a file
(Windows editors write one) is stripped rather than left in the first record.

Two kinds of reader live here. ``read_instructions`` and ``read_parallel`` return whole (small)
files, for prompts and evaluation sets. The :class:`Source` classes serve training streams:
``scan`` walks a source once, unit by unit (a line, a record, a row), to build its index
(``data/index.py``); ``read`` fetches a run of consecutive units from a remembered offset, so a
worker reads only its share of a 10-million-line corpus.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Iterator, Optional, Union

log = logging.getLogger(__name__)

INSTRUCTION_FIELDS = ("instruction", "input", "output")
UTF8_BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark some editors (Notepad, Excel exports) write at the start of a file.
Readers strip it from a file's first line: left in, it becomes part of the first sentence."""

Record = tuple[str, ...]
"""An instruction record ``(instruction, input, output)`` or a pair ``(english, other)``."""


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


EXPECTED_FILE = {
    "json": "a .json file holding a list of Alpaca records",
    "jsonl": "a .jsonl file of Alpaca records, one JSON object a line",
    "instructions": "a .json (a list) or .jsonl (one a line) file of Alpaca records",
    "tsv": "a .tsv file of sentence pairs, one pair a line",
    "text": "a UTF-8 text file",
    "records": "a .json (a list) or .jsonl (one a line) file of records",
}
"""What each kind of data path must name, for the message when it names a folder."""
FOLDER_ENTRIES_SHOWN = 5


def _check_exists(path: str | Path, expected: str = EXPECTED_FILE["text"]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not a file: expected {expected}")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


def aligned_prefixes(folder: Path, lang: str) -> list[str]:
    """The aligned-text prefixes in ``folder``: each ``X`` with ``X.en`` and ``X.{lang}`` files."""
    return sorted(
        str(p.with_suffix(""))
        for p in folder.glob("*.en")
        if p.is_file() and p.with_suffix(f".{lang}").is_file()
    )


def folder_instead_of_file(path: str | Path, format: str, lang: str) -> Optional[str]:
    """Why ``path`` cannot be a training source of ``format`` (``json``, ``jsonl``, ``tsv``,
    ``text``; ``instructions`` for either JSON form) when it names a folder, saying what it should
    name and what in the folder fits; None when it is no folder, or ``text`` and ``{path}.en``
    exists (an aligned-text prefix may share its name with a folder)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if format == "text":
        if Path(f"{path}.en").is_file():
            return None
        expected = (
            f"an aligned-text prefix (files {path}.en and {path}.{lang}, Moses/OPUS) or "
            f"{EXPECTED_FILE['tsv']}"
        )
        fits = aligned_prefixes(path, lang) + sorted(str(p) for p in path.glob("*.tsv"))
    else:
        expected = EXPECTED_FILE.get(format, "a data file")
        suffixes = {"json": (".json",), "jsonl": (".jsonl",), "tsv": (".tsv",)}.get(
            format, (".json", ".jsonl")
        )
        fits = sorted(str(p) for p in path.iterdir() if p.suffix in suffixes)
    message = f"{path} is a folder: expected {expected}"
    if fits:
        shown = ", ".join(fits[:FOLDER_ENTRIES_SHOWN])
        message += f"; in it: {shown}{', ...' if len(fits) > FOLDER_ENTRIES_SHOWN else ''}"
    return message


def _not_utf8(path: Path, line: int, column: int, err: UnicodeDecodeError) -> DataFormatError:
    byte = err.object[err.start : err.start + 1].hex()
    return DataFormatError(
        f"{path}:{line}: not valid UTF-8 at column {column} (byte 0x{byte}: {err.reason}); "
        "expected UTF-8 text: re-save the file as UTF-8 (e.g. `iconv -f <encoding> -t utf-8`)"
    )


def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        column = len(raw[: err.start].decode("utf-8", errors="replace")) + 1
        raise _not_utf8(path, number, column, err) from None


def _strip_bom(raw: bytes, first: bool) -> bytes:
    """``raw`` without a leading byte-order mark when it is the first line of its file."""
    return raw[len(UTF8_BOM) :] if first and raw.startswith(UTF8_BOM) else raw


def starts_with_bom(path: Path) -> bool:
    """Whether ``path`` begins with a UTF-8 byte-order mark (which its reader strips)."""
    with path.open("rb") as handle:
        return handle.read(len(UTF8_BOM)) == UTF8_BOM


def read_lines(path: str | Path) -> Iterator[str]:
    """Lines without their newline, decoded as UTF-8 with the failing line named; a leading
    byte-order mark is stripped (and logged)."""
    path = _check_exists(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                log.info("%s: stripped the UTF-8 byte-order mark at its start", path)
                raw = raw[len(UTF8_BOM) :]
            yield _decode(raw, path, number)


def _validate_record(record: object, where: str, require_output: bool = True) -> dict:
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object with fields {INSTRUCTION_FIELDS}")
    for name in ("instruction", "output") if require_output else ("instruction",):
        if name not in record:
            raise DataFormatError(
                f"{where}: missing field {name!r} (expected {INSTRUCTION_FIELDS})"
            )
    for name in INSTRUCTION_FIELDS:
        value = record.get(name, "")
        if not isinstance(value, str):
            raise DataFormatError(
                f"{where}: field {name!r} must be a string, got {type(value).__name__}"
            )
    return record


def validate_instruction(record: object, where: str, require_output: bool = True) -> dict:
    """``record`` checked as an Alpaca record (fields instruction, input, output: strings)."""
    return _validate_record(record, where, require_output)


def _load_jsonl_line(line: str, where: str) -> object:
    """A JSONL line's value, or None for a blank line."""
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{where}: invalid JSON ({err.msg})") from None


def _parse_jsonl_line(line: str, where: str, require_output: bool = True) -> Optional[dict]:
    """A JSONL line as a validated Alpaca record, or None for a blank line."""
    record = _load_jsonl_line(line, where)
    if record is None:
        return None
    return _validate_record(record, where, require_output)


def _load_json_list(path: Path, records: str = "Alpaca records") -> list:
    """A whole JSON list file; a bad byte is named by line and column, a leading BOM stripped."""
    raw = _strip_bom(path.read_bytes(), first=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        column = len(raw[line_start : err.start].decode("utf-8", errors="replace")) + 1
        raise _not_utf8(path, raw.count(b"\n", 0, err.start) + 1, column, err) from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(records, list) or not records:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of {records}")
    return records


def read_instructions(
    path: str | Path, lang: str = "en", require_output: bool = True
) -> Iterator[Example]:
    """Alpaca records from a JSON list (``.json``) or one object per line (``.jsonl``).

    ``require_output=False`` reads prompts to answer (``predict``), whose output is unknown.
    """
    path = _check_exists(path, EXPECTED_FILE["instructions"])
    if path.suffix == ".jsonl":
        count = 0
        for number, line in enumerate(read_lines(path), start=1):
            record = _parse_jsonl_line(line, f"{path}:{number}", require_output)
            if record is not None:
                count += 1
                yield _to_example(record, lang)
        if count == 0:
            raise DataFormatError(f"{path}: empty file, expected Alpaca records")
        return
    for index, record in enumerate(_load_json_list(path)):
        yield _to_example(_validate_record(record, f"{path}: record {index}", require_output), lang)


def _to_example(record: dict, lang: str) -> Example:
    return Example(
        record["instruction"],
        record.get("input", ""),
        record.get("output", ""),
        "instruction",
        lang,
    )


def read_parallel(prefix: str | Path, src_lang: str, tgt_lang: str) -> list[tuple[str, str]]:
    """Aligned pairs from ``{prefix}.{src_lang}`` and ``{prefix}.{tgt_lang}`` (Moses/OPUS layout).

    For test sets, read whole. Files of different lengths are an error (never paired silently);
    a line that is empty on either side is an error too, since a test set must not be damaged.
    Training corpora go through :class:`AlignedText`, which counts and skips empty lines.
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


# --- sources of training streams ------------------------------------------------------------
Unit = tuple[tuple[int, ...], Optional[Record]]
"""What a scan yields per unit: the offsets it starts at, and its record (None for a blank
JSONL line, which holds no record and is counted as skipped by the index)."""


class Source(ABC):
    """A training source: a file or data set read unit by unit.

    ``fingerprint`` names the exact data and settings, so a cached index is rebuilt when either
    changes. ``read(offsets, count)`` returns ``count`` consecutive units starting at the offsets
    a scan reported for the first of them (None for units without a record). ``describe(unit)``
    names a unit (``file:line``) in reports.
    """

    kind: str

    @abstractmethod
    def fingerprint(self) -> str:
        """Provided by each kind of source."""

    @abstractmethod
    def describe(self, unit: int) -> str:
        """Provided by each kind of source."""

    @abstractmethod
    def scan(self) -> Iterator[Unit]:
        """Provided by each kind of source."""

    @abstractmethod
    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        """Provided by each kind of source."""

    def score(self, record: Record) -> Optional[float]:
        """The record's quality score where the source has one (WikiMatrix margin)."""
        return None

    def byte_order_marks(self) -> list[str]:
        """The source's files that start with a UTF-8 byte-order mark, which its reader strips:
        the index counts them so the data report can say so."""
        return []


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _read_lines_at(path: Path, offset: int, count: int) -> list[bytes]:
    """``count`` raw lines from byte ``offset``; at offset 0, without a byte-order mark."""
    with path.open("rb") as handle:
        handle.seek(offset)
        lines = [handle.readline() for _ in range(count)]
    if lines:
        lines[0] = _strip_bom(lines[0], first=offset == 0)
    return lines


def _boms(*paths: Path) -> list[str]:
    return [str(path) for path in paths if starts_with_bom(path)]


class JsonlRecords(Source):
    """Records of a stream kind, one JSON value a line (``.jsonl``): streamed. The kind
    (:class:`~lightning_xllama.data.kinds.StreamKind`) parses each line's value."""

    def __init__(self, path: str | Path, kind):
        self.stream_kind = kind
        self.kind = kind.name
        self.path = _check_exists(path, kind.expected_file("jsonl"))

    def fingerprint(self) -> str:
        return f"jsonl:{_file_stamp(self.path)}"

    def describe(self, unit: int) -> str:
        return f"{self.path}:{unit + 1}"

    def _record(self, raw: bytes, number: int) -> Optional[Record]:
        where = f"{self.path}:{number}"
        value = _load_jsonl_line(_decode(raw, self.path, number), where)
        if value is None:
            return None
        return self.stream_kind.parse(value, where)

    def byte_order_marks(self) -> list[str]:
        return _boms(self.path)

    def scan(self) -> Iterator[Unit]:
        offset, number = 0, 0
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield (offset,), self._record(_strip_bom(raw, number == 1), number)
                offset += len(raw)
        if number == 0:
            raise DataFormatError(f"{self.path}: empty file, expected {self.stream_kind.records}")

    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        return [self._record(raw, 0) for raw in _read_lines_at(self.path, offsets[0], count)]


class JsonRecords(Source):
    """Records of a stream kind as one JSON list (``.json``), parsed by the kind.

    A JSON list cannot be split by lines, so each reader parses it whole: fine for Alpaca's
    52k records (20 MB); use JSONL for sets too large for that.
    """

    def __init__(self, path: str | Path, kind):
        self.stream_kind = kind
        self.kind = kind.name
        self.path = _check_exists(path, kind.expected_file("json"))
        self._records: Optional[list] = None

    def fingerprint(self) -> str:
        return f"json:{_file_stamp(self.path)}"

    def describe(self, unit: int) -> str:
        return f"{self.path}: record {unit}"

    def byte_order_marks(self) -> list[str]:
        return _boms(self.path)

    def _all(self) -> list:
        if self._records is None:
            self._records = _load_json_list(self.path, self.stream_kind.records)
        return self._records

    def _record(self, index: int) -> Record:
        return self.stream_kind.parse(self._all()[index], f"{self.path}: record {index}")

    def scan(self) -> Iterator[Unit]:
        for index in range(len(self._all())):
            yield (index,), self._record(index)

    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        return [self._record(index) for index in range(offsets[0], offsets[0] + count)]

    def __getstate__(self) -> dict:  # worker processes parse the file themselves
        return {**self.__dict__, "_records": None}


class AlignedText(Source):
    """Sentence pairs from ``{prefix}.en`` and ``{prefix}.{lang}``, one sentence a line.

    The two files are read in step; different lengths are an error naming both counts. A UTF-8
    byte-order mark at the start of either file is stripped, on scanning and on reading from
    offset 0 alike, and listed by :meth:`byte_order_marks` (the index reports it).
    """

    kind = "parallel"

    def __init__(self, prefix: str | Path, lang: str):
        folder = folder_instead_of_file(prefix, "text", lang)
        if folder is not None:
            raise FileNotFoundError(folder)
        self.paths = (_check_exists(f"{prefix}.en"), _check_exists(f"{prefix}.{lang}"))

    def fingerprint(self) -> str:
        return "text:" + "|".join(_file_stamp(p) for p in self.paths)

    def describe(self, unit: int) -> str:
        return f"{self.paths[0]}:{unit + 1} / {self.paths[1].name}:{unit + 1}"

    def byte_order_marks(self) -> list[str]:
        return _boms(*self.paths)

    def scan(self) -> Iterator[Unit]:
        en_path, other_path = self.paths
        offsets, number = [0, 0], 0
        with en_path.open("rb") as en, other_path.open("rb") as other:
            for number, (a, b) in enumerate(zip_longest(en, other), start=1):
                if a is None or b is None:
                    en_lines = number - 1 + (a is not None) + sum(1 for _ in en)
                    other_lines = number - 1 + (b is not None) + sum(1 for _ in other)
                    raise DataFormatError(
                        f"parallel files differ in length: {en_path} has {en_lines} lines, "
                        f"{other_path} has {other_lines}"
                    )
                first = number == 1
                yield (
                    tuple(offsets),
                    (
                        _decode(_strip_bom(a, first), en_path, number),
                        _decode(_strip_bom(b, first), other_path, number),
                    ),
                )
                offsets[0] += len(a)
                offsets[1] += len(b)
        if number == 0:
            raise DataFormatError(f"parallel files are empty: {en_path}, {other_path}")

    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        en = _read_lines_at(self.paths[0], offsets[0], count)
        other = _read_lines_at(self.paths[1], offsets[1], count)
        return [
            (_decode(a, self.paths[0], 0), _decode(b, self.paths[1], 0)) for a, b in zip(en, other)
        ]


class TsvPairs(Source):
    """Tab-separated pairs, optionally with a score column (WikiMatrix: score, source, target).

    ``columns`` maps ``en``, ``x`` and optionally ``score`` to 0-based column positions; by
    default two columns are ``en, x`` and three are ``score, en, x``, judged from the first line.
    Every line must have as many columns as the first.
    """

    kind = "parallel"

    def __init__(self, path: str | Path, columns: Optional[dict[str, Union[int, str]]] = None):
        self.path = _check_exists(path, EXPECTED_FILE["tsv"])
        self.width = self._first_width()
        if columns is None:
            columns = {"score": 0, "en": 1, "x": 2} if self.width >= 3 else {"en": 0, "x": 1}
        unknown = set(columns) - {"en", "x", "score"}
        if unknown or not {"en", "x"} <= set(columns):
            raise ValueError(
                f"{self.path}: TSV columns must map 'en', 'x' and optionally 'score' to positions, got {columns}"
            )
        self.columns = {name: int(position) for name, position in columns.items()}
        if max(self.columns.values()) >= self.width:
            raise DataFormatError(
                f"{self.path}:1: has {self.width} columns, but columns {self.columns} need "
                f"{max(self.columns.values()) + 1}"
            )

    def _first_width(self) -> int:
        with self.path.open("rb") as handle:
            first = handle.readline()
        if not first:
            raise DataFormatError(f"{self.path}: empty file, expected tab-separated pairs")
        return len(_decode(_strip_bom(first, True), self.path, 1).split("\t"))

    @property
    def has_score(self) -> bool:
        return "score" in self.columns

    def fingerprint(self) -> str:
        return f"tsv:{sorted(self.columns.items())}:{_file_stamp(self.path)}"

    def describe(self, unit: int) -> str:
        return f"{self.path}:{unit + 1}"

    def _record(self, raw: bytes, number: int) -> Record:
        fields = _decode(raw, self.path, number).split("\t")
        if len(fields) != self.width:
            raise DataFormatError(
                f"{self.path}:{number}: expected {self.width} tab-separated columns, found {len(fields)}"
            )
        record = (fields[self.columns["en"]], fields[self.columns["x"]])
        if self.has_score:
            score = fields[self.columns["score"]]
            try:
                float(score)
            except ValueError:
                raise DataFormatError(
                    f"{self.path}:{number}: score column {self.columns['score']} is not a number: {score!r}"
                ) from None
            record += (score,)
        return record

    def score(self, record: Record) -> Optional[float]:
        return float(record[2]) if self.has_score else None

    def byte_order_marks(self) -> list[str]:
        return _boms(self.path)

    def scan(self) -> Iterator[Unit]:
        offset = 0
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield (offset,), self._record(_strip_bom(raw, number == 1), number)
                offset += len(raw)

    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        return [self._record(raw, 0) for raw in _read_lines_at(self.path, offsets[0], count)]


class HFDataset(Source):
    """A Hugging Face data set, by hub name or a builder with local ``data_files``.

    ``load_dataset`` (not streaming) writes the data set once as Arrow files in ``cache_dir``
    and memory-maps them: rows are then read by index, in any worker, without holding the data
    set in memory. ``columns`` names the field of each role; a dotted name reaches into a nested
    field (``translation.en`` in OPUS-style data sets). The stream kind (a
    :class:`~lightning_xllama.data.kinds.StreamKind`) sets the roles: ``en`` and ``x`` for pairs;
    ``instruction``, ``input`` (optional) and ``output`` for instructions (the default names).
    """

    def __init__(
        self,
        name: str,
        kind,
        columns: Optional[dict[str, Union[int, str]]] = None,
        config: Optional[str] = None,
        split: str = "train",
        data_files: Optional[list[str]] = None,
        cache_dir: Optional[str] = None,
    ):
        self.stream_kind = kind
        self.name, self.kind, self.config, self.split = name, self.stream_kind.name, config, split
        self.data_files, self.cache_dir = data_files, cache_dir
        roles = self.stream_kind.roles
        if not roles:
            raise ValueError(
                f"data set {name!r}: stream kind {self.kind!r} names no roles, so it cannot be "
                "read from a Hugging Face data set"
            )
        if columns is None and self.stream_kind.columns_by_role:
            columns = {role: role for role in roles}
        required = set(self.stream_kind.required_roles)
        if columns is None or not required <= set(columns) or set(columns) - set(roles):
            raise ValueError(
                f"data set {name!r}: columns must name the fields {sorted(required)} "
                f"(roles: {roles}), got {columns}"
            )
        self.columns = {role: str(column) for role, column in columns.items()}
        self._dataset = None

    def __repr__(self) -> str:
        return (
            f"{self.name}" + (f" ({self.config})" if self.config else "") + f" split {self.split}"
        )

    def dataset(self):
        if self._dataset is None:
            import datasets

            self._dataset = datasets.load_dataset(
                self.name,
                self.config,
                split=self.split,
                data_files=self.data_files,
                cache_dir=self.cache_dir,
            )
            missing = {c.split(".")[0] for c in self.columns.values()} - set(
                self._dataset.column_names
            )
            if missing:
                raise DataFormatError(
                    f"data set {self!r}: no column(s) {sorted(missing)}; it has {self._dataset.column_names}"
                )
        return self._dataset

    def fingerprint(self) -> str:
        dataset = self.dataset()
        return f"hf:{self!r}:{sorted(self.columns.items())}:{dataset._fingerprint}"

    def describe(self, unit: int) -> str:
        return f"data set {self!r}: row {unit}"

    def _record(self, row: dict, index: int) -> Record:
        values = []
        for role in self.stream_kind.roles:
            if role not in self.columns:
                values.append("")
                continue
            value = row
            for part in self.columns[role].split("."):
                if not isinstance(value, dict) or part not in value:
                    raise DataFormatError(
                        f"data set {self!r}: row {index}: no field {self.columns[role]!r}"
                    )
                value = value[part]
            if not isinstance(value, str):
                raise DataFormatError(
                    f"data set {self!r}: row {index}: field {self.columns[role]!r} must be a string, "
                    f"got {type(value).__name__}"
                )
            values.append(value)
        return tuple(values)

    def scan(self) -> Iterator[Unit]:
        dataset = self.dataset()
        if len(dataset) == 0:
            raise DataFormatError(f"data set {self!r} is empty")
        for index, row in enumerate(dataset):
            yield (index,), self._record(row, index)

    def read(self, offsets: tuple[int, ...], count: int) -> list[Optional[Record]]:
        start = offsets[0]
        rows = self.dataset()[start : start + count]  # column-wise dict of lists
        return [self._record({k: v[i] for k, v in rows.items()}, start + i) for i in range(count)]

    def __getstate__(self) -> dict:  # worker processes memory-map the Arrow files themselves
        return {**self.__dict__, "_dataset": None}
