"""Stream kinds: what the records of a stream are and how each one becomes a training example.

A :class:`StreamKind` is one object per kind (``instructions``, ``parallel``, or one of your own):
the formats it reads, how a record is parsed and checked for empty fields, what is hashed to find
duplicates, how a record becomes examples (instruction, input, output), the label of its streams
in reports, how many examples a record gives, and the roles of its fields in a Hugging Face data
set. A stream names its kind by name (``streams: [{kind: parallel, ...}]``).

Add a kind the way a language is added (:mod:`lightning_xllama.languages`): subclass
:class:`StreamKind` in your own module, call :func:`register_stream_kind` there, and name the
module in the data module's ``language_modules`` (``data.init_args.language_modules:
[my_pkg.kinds]``), which imports it before the streams are read. ``docs/extending.md`` and
``tests/helpers/dialogue_kind.py`` show a dialogue kind.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from lightning_xllama.data.sources import (
    EXPECTED_FILE,
    AlignedText,
    DataFormatError,
    Example,
    HFDataset,
    JsonlRecords,
    JsonRecords,
    Record,
    Source,
    TsvPairs,
    validate_instruction,
)
from lightning_xllama.data.tasks import pair_examples
from lightning_xllama.languages import import_language_modules
from lightning_xllama.prompts import InstructionRule, check_instruction_rule

if TYPE_CHECKING:
    from lightning_xllama.data.streams import Stream


@dataclass(frozen=True)
class PairRules:
    """How translation pairs become training examples (the data module's settings of the same
    names; ``paper: true`` sets both to the paper's).

    Args:
        translation_instructions: ``package`` (a paraphrase drawn per pair) or ``official`` (the
            paper's 33 by the pair's line): :func:`~lightning_xllama.prompts.translation_instruction`.
        strip_pairs: strip surrounding whitespace (spaces, tabs) of both sentences, as the paper's
            ``translation.py`` does; otherwise only the line break is removed.
    """

    translation_instructions: InstructionRule = "package"
    strip_pairs: bool = False

    def __post_init__(self) -> None:
        check_instruction_rule(self.translation_instructions)


def record_hash(fields: Record) -> int:
    """A 64-bit hash of a record's fields (what dedupe compares)."""
    return int.from_bytes(
        hashlib.blake2b("\x00".join(fields).encode(), digest_size=8).digest(), "little"
    )


class StreamKind:
    """What one kind of stream holds and how its records are trained on.

    Subclass it for a kind of your own: set ``name`` (the ``kind:`` of a stream), ``records``
    (what its files hold, for messages) and override :meth:`parse` and :meth:`examples`; the
    rest has defaults for records read from JSON or JSONL files (and Hugging Face data sets,
    with ``roles``). A record is a tuple of strings: whatever :meth:`parse` returns.
    """

    name: str = ""
    """The stream's ``kind:`` in a config, and the first part of its default label."""
    formats: tuple[str, ...] = ("json", "jsonl")
    """The ``format`` values a stream of this kind can be read from."""
    records: str = "records"
    """What the files hold (``Alpaca records``), for the messages about a file."""
    roles: tuple[str, ...] = ()
    """The fields of a record, in order, as ``columns`` maps them in a Hugging Face data set (a
    row's record is those fields' strings, in this order); none: no Hugging Face format."""
    required_roles: tuple[str, ...] = ()
    """The roles a Hugging Face stream's ``columns`` must name."""
    columns_by_role: bool = True
    """Whether a Hugging Face stream without ``columns`` reads each role from the field of the
    same name (otherwise ``columns`` must be given)."""
    directed: bool = False
    """Whether the stream's ``direction`` applies (its label and data plan show it)."""
    overlap_fields: tuple[int, ...] = ()
    """Positions of a record's sentences that ``data stats`` looks for in the evaluation sets."""

    def parse(self, value: object, where: str) -> Record:
        """A record from one JSON value (a JSON list's item, a JSONL line); raises a
        :class:`~lightning_xllama.data.sources.DataFormatError` naming ``where``."""
        raise NotImplementedError(f"stream kind {self.name!r} does not parse JSON records")

    def empty_field(self, record: Record, lang: str) -> Optional[str]:
        """Why a record cannot be trained on because a needed field is empty (a skip reason,
        counted in reports), or None. By default: any empty field."""
        for role, value in zip(self.roles or range(len(record)), record):
            if not value.strip():
                return f"empty {role}" if self.roles else "empty field"
        return None

    def dedupe_fields(self, record: Record) -> Record:
        """The fields two records must share to be duplicates."""
        return record

    def hash(self, record: Record) -> int:
        """The record's dedupe hash."""
        return record_hash(self.dedupe_fields(record))

    def examples(self, record: Record, lang: str, direction: str, seed: str) -> list[Example]:
        """The training examples of a record, :meth:`multiplicity` of them. ``seed`` is the
        record's own (run seed and unit): ``random.Random(seed)`` makes choices that replay
        identically wherever and whenever the record is read."""
        raise NotImplementedError(f"stream kind {self.name!r} has no examples()")

    def unit_examples(
        self, record: Record, lang: str, direction: str, seed: str, unit: int, rules: PairRules
    ) -> list[Example]:
        """The training examples of the record at ``unit`` (its 0-based line or row in the
        source) under the data module's :class:`PairRules`. By default :meth:`examples`: the
        rules are about translation pairs, which the ``parallel`` kind applies."""
        return self.examples(record, lang, direction, seed)

    def multiplicity(self, direction: str) -> int:
        """Examples per record."""
        return 1

    def label(self, lang: str, direction: str) -> str:
        """A stream's default name in reports and allocation files."""
        return f"{self.name}:{lang}" + (f":{direction}" if self.directed else "")

    def default_format(self, path: str) -> str:
        """The format of a stream that sets none, from its path."""
        suffix = Path(path).suffix
        return {".json": "json", ".jsonl": "jsonl", ".tsv": "tsv"}.get(suffix, "text")

    def folder_format(self, path: str) -> str:
        """What a stream's path must name when no format is set (a key of
        ``sources.EXPECTED_FILE``), for the message when it names a folder."""
        return "records"

    def expected_file(self, format: str) -> str:
        """What a file of ``format`` must hold, in words."""
        if format == "json":
            return f"a .json file holding a list of {self.records}"
        if format == "jsonl":
            return f"a .jsonl file of {self.records}, one JSON object a line"
        return EXPECTED_FILE.get(format, "a data file")

    def open(self, stream: Stream, cache_dir: Optional[str] = None) -> Source:
        """The stream's source, by its format."""
        if stream.format == "hf":
            hf_cache = str(Path(cache_dir) / "hf") if cache_dir else None
            return HFDataset(
                stream.path,
                self,
                stream.columns,
                stream.hf_config,
                stream.hf_split,
                stream.hf_data_files,
                hf_cache,
            )
        if stream.format == "json":
            return JsonRecords(stream.path, self)
        if stream.format == "jsonl":
            return JsonlRecords(stream.path, self)
        raise ValueError(
            f"stream {stream.label}: kind {self.name!r} has no reader for format {stream.format!r}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class JsonlInstructions(JsonlRecords):
    """Alpaca records, one JSON object a line (``.jsonl``): streamed."""

    def __init__(self, path: str | Path):
        super().__init__(path, INSTRUCTIONS)


class JsonInstructions(JsonRecords):
    """Alpaca records as one JSON list (``.json``, as Stanford Alpaca ships them)."""

    def __init__(self, path: str | Path):
        super().__init__(path, INSTRUCTIONS)


class InstructionKind(StreamKind):
    """Alpaca records (instruction, input, output), trained on as they are."""

    name = "instructions"
    formats = ("json", "jsonl", "hf")
    records = "Alpaca records"
    roles = ("instruction", "input", "output")
    required_roles = ("instruction", "output")

    def parse(self, value: object, where: str) -> Record:
        record = validate_instruction(value, where)
        return record["instruction"], record.get("input", ""), record["output"]

    def empty_field(self, record: Record, lang: str) -> Optional[str]:
        instruction, _, output = record
        if not instruction.strip():
            return "empty instruction"
        if not output.strip():
            return "empty output"
        return None

    def examples(self, record: Record, lang: str, direction: str, seed: str) -> list[Example]:
        return [Example(record[0], record[1], record[2], "instruction", lang)]

    def folder_format(self, path: str) -> str:
        return "instructions"

    def open(self, stream: Stream, cache_dir: Optional[str] = None) -> Source:
        if stream.format == "json":
            return JsonInstructions(stream.path)
        if stream.format == "jsonl":
            return JsonlInstructions(stream.path)
        return super().open(stream, cache_dir)


class ParallelKind(StreamKind):
    """English/``lang`` sentence pairs, each turned into a translation instruction (a
    paraphrase of "Translate the following sentences from English to X.") in the stream's
    direction, or two with ``both``."""

    name = "parallel"
    formats = ("text", "tsv", "hf")
    records = "sentence pairs"
    roles = ("en", "x")
    required_roles = ("en", "x")
    columns_by_role = False
    directed = True
    overlap_fields = (0, 1)

    def empty_field(self, record: Record, lang: str) -> Optional[str]:
        if not record[0].strip():
            return "empty en side"
        if not record[1].strip():
            return f"empty {lang} side"
        return None

    def dedupe_fields(self, record: Record) -> Record:
        return record[:2]  # without a TSV's score

    def examples(self, record: Record, lang: str, direction: str, seed: str) -> list[Example]:
        return self.unit_examples(record, lang, direction, seed, 0, PairRules())

    def unit_examples(
        self, record: Record, lang: str, direction: str, seed: str, unit: int, rules: PairRules
    ) -> list[Example]:
        en, x = record[0], record[1]
        if rules.strip_pairs:
            en, x = en.strip(), x.strip()
        rule = rules.translation_instructions
        return pair_examples(en, x, "en", lang, direction, random.Random(seed), rule, unit)

    def multiplicity(self, direction: str) -> int:
        return 2 if direction == "both" else 1

    def folder_format(self, path: str) -> str:
        return "tsv" if Path(path).suffix == ".tsv" else "text"

    def open(self, stream: Stream, cache_dir: Optional[str] = None) -> Source:
        if stream.format == "tsv":
            return TsvPairs(stream.path, stream.columns)
        if stream.format == "text":
            return AlignedText(stream.path, stream.lang)
        return super().open(stream, cache_dir)


_REGISTRY: dict[str, StreamKind] = {}

HOW_TO_REGISTER = (
    "register a kind with lightning_xllama.data.kinds.register_stream_kind() in your own module "
    "and name that module in the data module's language_modules"
)


def register_stream_kind(kind: StreamKind, *, overwrite: bool = False) -> StreamKind:
    """Add ``kind`` to the registry under ``kind.name`` (replace an entry with ``overwrite=True``).

    Registering an object of the same class again (a module imported twice) is allowed."""
    if not isinstance(kind, StreamKind):
        raise TypeError(f"expected a StreamKind, got {type(kind).__name__}")
    if not kind.name:
        raise ValueError(f"{type(kind).__name__}: set `name`, the stream's `kind:` in a config")
    current = _REGISTRY.get(kind.name)
    if current is not None and type(current) is not type(kind) and not overwrite:
        raise ValueError(
            f"stream kind {kind.name!r} is already registered as {current!r}; "
            "pass overwrite=True to replace it"
        )
    _REGISTRY[kind.name] = kind
    return kind


def get_stream_kind(kind: Union[str, StreamKind]) -> StreamKind:
    """The registered kind named ``kind`` (a kind object is returned as it is); an unknown name
    lists the registered kinds and says how to register one."""
    if isinstance(kind, StreamKind):
        return kind
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise KeyError(
            f"unknown stream kind {kind!r}; registered kinds: {', '.join(known_stream_kinds())}. "
            f"To add one, {HOW_TO_REGISTER}"
        ) from None


def find_stream_kind(name: str) -> Optional[StreamKind]:
    """The registered kind named ``name``, or None (a record of a kind whose module is not
    imported here, e.g. in an exported checkpoint's data plan)."""
    return _REGISTRY.get(name)


def known_stream_kinds() -> list[str]:
    return sorted(_REGISTRY)


INSTRUCTIONS = register_stream_kind(InstructionKind())
PARALLEL = register_stream_kind(ParallelKind())

__all__ = [
    "DataFormatError",
    "INSTRUCTIONS",
    "PARALLEL",
    "InstructionKind",
    "JsonInstructions",
    "JsonlInstructions",
    "PairRules",
    "ParallelKind",
    "StreamKind",
    "find_stream_kind",
    "get_stream_kind",
    "import_config_modules",
    "known_stream_kinds",
    "record_hash",
    "register_stream_kind",
]


def import_config_modules(data: object) -> None:
    """Import the ``language_modules`` a config's ``data`` section names (a dict or a parsed
    namespace, ``init_args`` inside), before its classes are built: the CLI builds each
    ``Stream`` of a ``streams`` list before the data module's ``__init__`` would import them, and
    a stream's kind and language must be registered by then."""
    init_args = data.get("init_args") if hasattr(data, "get") else None
    modules = init_args.get("language_modules") if hasattr(init_args, "get") else None
    import_language_modules(modules or [])
