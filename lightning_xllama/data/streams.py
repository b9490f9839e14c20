"""Streams: (kind, language, source, direction), each read in a shuffled order that can be replayed.

An epoch's pass over a stream visits its chunks (``index.CHUNK_UNITS`` lines each) in a seeded
permutation; consecutive chunks of that permutation form windows of about ``shuffle_window``
units, and each window's usable units are shuffled. A position in the pass maps to (window,
offset) by arithmetic on the index's per-chunk counts, so a reader starts anywhere after reading
one window. Ranks and workers therefore take contiguous ranges of the order and read only their
own windows, and a resumed run continues exactly where it stopped. Memory: one window per stream
and worker. A stream asked for more examples than a pass holds starts another pass, with another
permutation (oversampling).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator, Literal, Optional, Sequence, Union

import numpy as np

from lightning_xllama.data.index import CHUNK_UNITS, SourceIndex, load_index
from lightning_xllama.data.kinds import PairRules, StreamKind, get_stream_kind
from lightning_xllama.data.sources import Example, Record, Source, folder_instead_of_file
from lightning_xllama.data.tasks import Direction
from lightning_xllama.languages import get_language

SourceFormat = Literal["json", "jsonl", "text", "tsv", "hf"]


@dataclass
class Stream:
    """One stream of a mixture: (kind, language, source, direction) and its share.

    Args:
        kind: ``instructions`` (Alpaca records), ``parallel`` (English/``lang`` sentence pairs,
            turned into translation instructions) or a kind registered by a module named in the
            data module's ``language_modules`` (see :mod:`lightning_xllama.data.kinds`).
        lang: language code of the stream; for pairs, the non-English side.
        path: the source. Instructions: a ``.json`` list or ``.jsonl`` file of Alpaca records.
            Pairs: an aligned-text prefix (``{path}.en`` + ``{path}.{lang}``, Moses/OPUS) or a
            ``.tsv`` file. With ``format: hf``: a Hugging Face data set name, or a builder such
            as ``json`` with ``hf_data_files``.
        direction: pairs as ``en-x`` (English to ``lang``), ``x-en`` or ``both`` (two examples a pair).
        format: ``json``, ``jsonl``, ``text``, ``tsv`` or ``hf``; by default from the path's suffix
            (no known suffix: an aligned-text prefix).
        weight: share of the stream, as a ratio to the other streams' weights (default 1).
        count: records (pairs or instructions) drawn from the stream per epoch, instead of a
            weight; more than the stream holds repeats it, fewer takes a random part.
        min_score: TSV with a score column (WikiMatrix margin): skip pairs scoring below it (counted).
        columns: which column holds each role. TSV: 0-based positions of ``en``, ``x`` and
            ``score`` (default: ``score, en, x`` for three columns, ``en, x`` for two). HF: field
            names of ``en`` and ``x``, or ``instruction``, ``input``, ``output``; a dotted name
            reaches into a nested field (``translation.en``).
        hf_config: Hugging Face data set configuration (``en-zh``).
        hf_split: Hugging Face split.
        hf_data_files: local files for a builder data set (``json``, ``csv``, ``parquet``).
        name: label in reports and allocation files; default ``{kind}:{lang}`` (plus ``:{direction}``).
    """

    kind: str
    lang: str
    path: str
    direction: Direction = "en-x"
    format: Optional[SourceFormat] = None
    weight: Optional[float] = None
    count: Optional[int] = None
    min_score: Optional[float] = None
    columns: Optional[dict[str, Union[int, str]]] = None
    hf_config: Optional[str] = None
    hf_split: str = "train"
    hf_data_files: Optional[list[str]] = None
    name: Optional[str] = None

    def __post_init__(self) -> None:
        try:
            kind = get_stream_kind(self.kind)
        except KeyError as err:
            name = self.name or f"{self.kind}:{self.lang}"
            raise ValueError(f"stream {name}: {err.args[0]}") from None
        where = f"stream {self.label}"
        get_language(self.lang)  # an unknown code fails here, listing the known ones
        if self.direction not in ("en-x", "x-en", "both"):
            raise ValueError(
                f"{where}: direction must be 'en-x', 'x-en' or 'both', got {self.direction!r}"
            )
        if self.format != "hf":  # a folder named where a file is expected: say so, now
            folder = folder_instead_of_file(self.path, self._expected_file(), self.lang)
            if folder is not None:
                raise ValueError(f"{where}: {folder}")
        if self.format is None:
            self.format = kind.default_format(self.path)
        if self.format not in kind.formats:
            raise ValueError(
                f"{where}: {self.kind} cannot be read from format {self.format!r} ({self.path}); "
                f"expected one of {kind.formats}"
            )
        if self.weight is not None and self.count is not None:
            raise ValueError(f"{where}: give a weight or a count, not both")
        if self.weight is not None and not self.weight >= 0:
            raise ValueError(f"{where}: weight must be non-negative, got {self.weight}")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 0):
            raise ValueError(
                f"{where}: count must be a non-negative whole number, got {self.count}"
            )
        if self.min_score is not None and self.format != "tsv":
            raise ValueError(
                f"{where}: min_score filters TSV pairs with a score column; {self.path} is {self.format}"
            )

    def _expected_file(self) -> str:
        """What ``path`` must name (a key of ``sources.EXPECTED_FILE``), the format unset too."""
        if self.format is not None:
            return self.format
        return self.stream_kind.folder_format(self.path)

    @property
    def stream_kind(self) -> StreamKind:
        """The registered kind named by ``kind``: it parses, filters and turns records into
        examples."""
        return get_stream_kind(self.kind)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return get_stream_kind(self.kind).label(self.lang, self.direction)

    @property
    def multiplicity(self) -> int:
        """Examples per record: two for pairs in both directions."""
        return self.stream_kind.multiplicity(self.direction)

    def open(self, cache_dir: Optional[str] = None) -> Source:
        return self.stream_kind.open(self, cache_dir)

    def index(self, source: Source, dedupe: bool, cache_dir: Optional[str] = None) -> SourceIndex:
        return load_index(
            source, self.stream_kind, self.lang, self.min_score, dedupe, cache_dir, self.label
        )


Item = tuple[int, int, Record]
"""(unit, which, record): ``which`` picks the direction of a pair read in both directions."""


class StreamReader:
    """A stream's training order, readable from any position (see the module docstring).

    ``held_out`` units (the validation examples) are left out of the order; ``rules``: how pairs
    become examples (:class:`~lightning_xllama.data.kinds.PairRules`).
    """

    def __init__(
        self,
        stream: Stream,
        source: Source,
        index: SourceIndex,
        seed: int,
        shuffle_window: int,
        held_out: Sequence[int] = (),
        rules: PairRules = PairRules(),
    ):
        self.stream, self.source, self.index, self.seed = stream, source, index, seed
        self.rules = rules
        bits = np.unpackbits(index.usable, count=index.units)
        bits[np.asarray(held_out, dtype=np.int64)] = 0
        self.train_bits = np.packbits(bits)
        self.counts = index.chunk_counts(self.train_bits) * stream.multiplicity
        self.size = int(self.counts.sum())
        """Examples in one pass."""
        self.window_chunks = max(1, shuffle_window // CHUNK_UNITS)
        self.key = zlib.crc32(stream.label.encode())
        self.kind = stream.stream_kind
        self._plan: Optional[tuple[tuple[int, int], np.ndarray, np.ndarray]] = None

    def example(self, item: Item) -> Example:
        """The example of an item, by the stream's kind: pairs become translation instructions,
        with a paraphrase drawn per pair from ``seed`` and the pair's line (or, by the ``official``
        rule, the paper's for that line), wherever and whenever it is read."""
        unit, which, record = item
        s = self.stream
        seed = f"{self.seed}:{unit}"
        return self.kind.unit_examples(record, s.lang, s.direction, seed, unit, self.rules)[which]

    def _pass(self, epoch: int, number: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk order of a pass and the cumulative example counts of its windows."""
        if self._plan is None or self._plan[0] != (epoch, number):
            order = np.random.default_rng([self.seed, self.key, epoch, number]).permutation(
                self.index.chunks
            )
            sizes = np.add.reduceat(
                self.counts[order], np.arange(0, len(order), self.window_chunks)
            )
            self._plan = ((epoch, number), order, np.cumsum(sizes))
        return self._plan[1], self._plan[2]

    def _window(self, epoch: int, number: int, window: int) -> list[Item]:
        order, _ = self._pass(epoch, number)
        items: list[Item] = []
        for chunk in order[window * self.window_chunks : (window + 1) * self.window_chunks]:
            mask = self.index.chunk_mask(chunk, self.train_bits)
            if not mask.any():
                continue
            records = self.source.read(tuple(self.index.offsets[chunk]), len(mask))
            first = int(chunk) * self.index.chunk_units
            for i in np.flatnonzero(mask):
                items += [
                    (first + int(i), which, records[i]) for which in range(self.stream.multiplicity)
                ]
        shuffle = np.random.default_rng([self.seed, self.key, epoch, number, window]).permutation(
            len(items)
        )
        return [items[i] for i in shuffle]

    def items(self, epoch: int, start: int, stop: int) -> Iterator[Item]:
        """Items at positions ``[start, stop)`` of the epoch's order (beyond one pass: the next)."""
        if self.size == 0:
            if stop > start:
                raise ValueError(f"stream {self.stream.label} has no usable examples")
            return
        position = start
        while position < stop:
            number, offset = divmod(position, self.size)
            _, ends = self._pass(epoch, number)
            window = int(np.searchsorted(ends, offset, side="right"))
            begin = int(ends[window - 1]) if window else 0
            items = self._window(epoch, number, window)
            take = items[offset - begin : offset - begin + stop - position]
            yield from take
            position += len(take)

    def records(self, bits: Optional[np.ndarray] = None) -> Iterator[tuple[int, Record]]:
        """Every usable unit in file order (``bits``: another mask, e.g. the held-out units)."""
        bits = self.train_bits if bits is None else bits
        for chunk in range(self.index.chunks):
            mask = self.index.chunk_mask(chunk, bits)
            if mask.any():
                records = self.source.read(tuple(self.index.offsets[chunk]), len(mask))
                first = chunk * self.index.chunk_units
                yield from ((first + int(i), records[i]) for i in np.flatnonzero(mask))


def held_out_units(index: SourceIndex, count: int, seed: int, label: str) -> np.ndarray:
    """``count`` usable units drawn with a seed: the stream's validation records."""
    usable = index.usable_units
    count = min(count, usable)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, zlib.crc32(label.encode()), 1])
    positions = np.sort(rng.choice(usable, count, replace=False))
    counts = index.chunk_counts()
    ends = np.cumsum(counts)
    units = []
    for position in positions:
        chunk = int(np.searchsorted(ends, position, side="right"))
        within = int(position - (ends[chunk] - counts[chunk]))
        units.append(
            chunk * index.chunk_units + int(np.flatnonzero(index.chunk_mask(chunk))[within])
        )
    return np.asarray(units, dtype=np.int64)
