"""The index of a training source: where its chunks start and which units can be trained on.

One pass over a source (in ``prepare_data``: once per node, before any rank trains) validates
every line, so a bad record at line 9,000,000 fails before training starts rather than hours into
it, and records:

- the byte offsets (or record numbers) of every ``CHUNK_UNITS``-th unit, so a worker can seek to
  its own chunks and never read the rest of the file;
- one bit per unit: usable or not, after the empty-field, minimum-score and duplicate filters;
- how many units each filter skipped, and the first few places, for the reports;
- without ``dedupe``: how many exact duplicates stay in (and where), so a report can suggest
  ``dedupe: true``; and which files started with a UTF-8 byte-order mark (stripped on reading).

The index is cached on disk under a key made of the source's fingerprint (paths, sizes,
modification times, columns) and the filter settings, so it is rebuilt only when one changes.
Its memory is about one bit per line plus 16 bytes per chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from lightning_xllama.data.kinds import StreamKind, get_stream_kind
from lightning_xllama.data.sources import Source
from lightning_xllama.runtime.progress import progress as progress_bar

CHUNK_UNITS = 256
"""Units (lines, records, rows) per chunk: the granularity of seeking, sharding and shuffling."""
INDEX_VERSION = 2
PLACES_PER_REASON = 3
"""How many skipped units each reason names in reports."""

log = logging.getLogger(__name__)


@dataclass
class SourceIndex:
    """Chunk offsets and usable-unit bits of one source (see the module docstring)."""

    units: int
    offsets: np.ndarray
    """(chunks, files) int64: where each chunk's first unit starts."""
    usable: np.ndarray
    """Packed bits, one per unit: 1 when the unit is trained on."""
    skipped: Counter = field(default_factory=Counter)
    """Reason -> number of units skipped for it."""
    skipped_at: dict[str, list[str]] = field(default_factory=dict)
    """Reason -> the first few units skipped for it, named (``file:line``)."""
    duplicates: int = 0
    """Units that repeat an earlier usable unit exactly and are trained on (``dedupe`` off; with
    ``dedupe`` on they are skipped, under the reason ``duplicate``, and this is 0)."""
    duplicates_at: list[str] = field(default_factory=list)
    """The first few of those duplicates, named (``file:line``)."""
    byte_order_marks: list[str] = field(default_factory=list)
    """The source's files that start with a UTF-8 byte-order mark, stripped on reading."""
    chunk_units: int = CHUNK_UNITS

    @property
    def chunks(self) -> int:
        return len(self.offsets)

    def chunk_length(self, chunk: int) -> int:
        return min(self.chunk_units, self.units - chunk * self.chunk_units)

    def chunk_mask(self, chunk: int, bits: Optional[np.ndarray] = None) -> np.ndarray:
        """Usable units of ``chunk`` as booleans (``bits``: another packed mask of the same shape)."""
        bits = self.usable if bits is None else bits
        start = chunk * self.chunk_units // 8  # CHUNK_UNITS is a multiple of 8
        packed = bits[start : start + -(-self.chunk_length(chunk) // 8)]
        return np.unpackbits(packed, count=self.chunk_length(chunk)).astype(bool)

    def chunk_counts(self, bits: Optional[np.ndarray] = None) -> np.ndarray:
        """Usable units per chunk."""
        bits = self.usable if bits is None else bits
        padded = np.unpackbits(bits)[
            : self.chunks * self.chunk_units
        ]  # packbits pads to bytes only
        padded = np.pad(padded, (0, self.chunks * self.chunk_units - len(padded)))
        return padded.reshape(self.chunks, self.chunk_units).sum(axis=1, dtype=np.int64)

    @property
    def usable_units(self) -> int:
        return int(np.unpackbits(self.usable, count=self.units).sum())

    def notes(self) -> list[str]:
        """What a report should say besides the skipped units: duplicates kept (with the
        setting that removes them) and byte-order marks stripped."""
        notes = []
        if self.duplicates:
            notes.append(
                f"{self.duplicates} exact duplicate(s) kept (e.g. {'; '.join(self.duplicates_at)}); "
                "set `dedupe: true` on the data module to skip them"
            )
        if self.byte_order_marks:
            notes.append(
                f"UTF-8 byte-order mark stripped from the start of {', '.join(self.byte_order_marks)}"
            )
        return notes


def build_index(
    source: Source,
    kind: Union[str, StreamKind],
    lang: str,
    min_score: Optional[float] = None,
    dedupe: bool = False,
    label: str = "",
) -> SourceIndex:
    """Scan ``source`` once: validate every unit, record chunk offsets and the usable bits.
    ``kind`` (a registered name or a kind) says which fields must not be empty and what is hashed
    to find duplicates."""
    kind = get_stream_kind(kind)
    offsets: list[tuple[int, ...]] = []
    usable = bytearray()
    skipped: Counter = Counter()
    skipped_at: dict[str, list[str]] = {}
    hashes = array("Q")  # one per usable unit, in unit order
    units = 0

    def skip(reason: str, unit: int) -> None:
        skipped[reason] += 1
        places = skipped_at.setdefault(reason, [])
        if len(places) < PLACES_PER_REASON:
            places.append(source.describe(unit))

    progress = progress_bar(desc=f"indexing {label}", unit=" units", mininterval=2.0)
    for unit, (unit_offsets, record) in enumerate(source.scan()):
        if unit % CHUNK_UNITS == 0:
            offsets.append(unit_offsets)
            progress.update(CHUNK_UNITS)
        units += 1
        reason = "blank line" if record is None else kind.empty_field(record, lang)
        if reason is None and min_score is not None:
            score = source.score(record)
            if score is None:
                raise ValueError(
                    f"{source.describe(0)}: min_score is set but this source has no score column"
                )
            if score < min_score:
                reason = f"score below {min_score}"
        usable.append(reason is None)
        if reason is not None:
            skip(reason, unit)
        else:  # hashed with dedupe off too: duplicates kept are counted and reported
            hashes.append(kind.hash(record))
    progress.close()
    bits = np.frombuffer(bytes(usable), dtype=np.uint8)
    duplicates, duplicates_at = 0, []
    if len(hashes):
        _, first = np.unique(np.frombuffer(hashes, dtype=np.uint64), return_index=True)
        repeated = np.ones(len(hashes), dtype=bool)
        repeated[first] = False
        duplicate_units = np.flatnonzero(bits)[repeated]  # the hashed units, in order
        if dedupe:
            bits = bits.copy()
            bits[duplicate_units] = 0
            for unit in duplicate_units:
                skip("duplicate", int(unit))
        else:
            duplicates = len(duplicate_units)
            duplicates_at = [source.describe(int(u)) for u in duplicate_units[:PLACES_PER_REASON]]
    index = SourceIndex(
        units=units,
        offsets=np.asarray(offsets, dtype=np.int64).reshape(len(offsets), -1),
        usable=np.packbits(bits),
        skipped=skipped,
        skipped_at=skipped_at,
        duplicates=duplicates,
        duplicates_at=duplicates_at,
        byte_order_marks=source.byte_order_marks(),
    )
    name = label or source.describe(0)
    if index.duplicates:  # logged when built; reports take notes()
        log.warning("%s: %s", name, index.notes()[0])
    if index.byte_order_marks:
        log.info("%s: %s", name, index.notes()[-1])
    return index


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightning_xllama"


def load_index(
    source: Source,
    kind: Union[str, StreamKind],
    lang: str,
    min_score: Optional[float] = None,
    dedupe: bool = False,
    cache_dir: Optional[str] = None,
    label: str = "",
) -> SourceIndex:
    """The cached index of ``source``, built (and cached) when missing or out of date."""
    kind = get_stream_kind(kind)
    settings = f"v{INDEX_VERSION}|{CHUNK_UNITS}|{kind.name}|{lang}|{min_score}|{dedupe}|{source.fingerprint()}"
    key = hashlib.sha1(settings.encode()).hexdigest()[:20]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / "index" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as saved:
            meta = json.loads(str(saved["meta"]))
            return SourceIndex(
                units=meta["units"],
                offsets=saved["offsets"],
                usable=saved["usable"],
                skipped=Counter(meta["skipped"]),
                skipped_at=meta["skipped_at"],
                duplicates=meta["duplicates"],
                duplicates_at=meta["duplicates_at"],
                byte_order_marks=meta["byte_order_marks"],
            )
    index = build_index(source, kind, lang, min_score, dedupe, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "units": index.units,
        "skipped": dict(index.skipped),
        "skipped_at": index.skipped_at,
        "duplicates": index.duplicates,
        "duplicates_at": index.duplicates_at,
        "byte_order_marks": index.byte_order_marks,
        "settings": settings,
    }
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, offsets=index.offsets, usable=index.usable, meta=np.array(json.dumps(meta)))
    os.replace(partial, path)  # atomic: ranks that build at once do not read half a file
    return index
