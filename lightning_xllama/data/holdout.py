"""Opening a stream for training: its index, the records held out for the validation loss, and
the reader of the rest in the stream's shuffled order."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from lightning_xllama.data.kinds import PairRules
from lightning_xllama.data.sources import Example
from lightning_xllama.data.streams import Stream, StreamReader, held_out_units

log = logging.getLogger(__name__)

HOLD_OUT_SHARE = 10
"""At most one record in this many is held out of a stream."""


def read_stream(
    stream: Stream,
    cache_dir: Optional[str],
    dedupe: bool,
    seed: int,
    shuffle_window: int,
    val_examples_per_stream: int,
    rules: PairRules = PairRules(),
) -> tuple[StreamReader, list[Example]]:
    """The stream's training reader and its held-out examples (unencoded, in file order).

    ``val_examples_per_stream`` records are held out (at most a tenth of the usable ones),
    chosen by ``seed``; a pair read in both directions gives an example of each. ``rules``: how
    pairs become examples.
    """
    source = stream.open(cache_dir)
    index = stream.index(source, dedupe, cache_dir)
    held_out = held_out_units(
        index,
        min(val_examples_per_stream, index.usable_units // HOLD_OUT_SHARE),
        seed,
        stream.label,
    )
    reader = StreamReader(stream, source, index, seed, shuffle_window, held_out, rules)
    bits = np.zeros(index.units, dtype=bool)
    bits[held_out] = True
    examples = [
        reader.example((unit, which, record))
        for unit, record in reader.records(np.packbits(bits))
        for which in range(stream.multiplicity)
    ]
    skipped = ", ".join(f"{n} {reason}" for reason, n in index.skipped.items()) or "none"
    log.info(
        "stream %s: %d units, %d held out, skipped: %s",
        stream.label,
        index.units,
        len(held_out),
        skipped,
    )
    return reader, examples
