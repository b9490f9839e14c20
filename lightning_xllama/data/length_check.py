"""What ``max_length`` does to the training examples, counted before step 1.

Training examples are otherwise encoded only as they are read, so without this check a run whose
every example is too long would train on nothing for a whole epoch.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import Callable, Optional, Sequence

from lightning.pytorch.utilities import rank_zero_warn

from lightning_xllama.data.encoding import IGNORE_INDEX, MASKED, Overflow
from lightning_xllama.data.report import reasons_text, stream_counts_text
from lightning_xllama.data.streams import StreamReader

LENGTH_CHECK_EXAMPLES = 4096
"""Training examples of each stream encoded before step 1 to count what ``max_length`` loses:
all of a smaller stream, else the first of epoch 0's order, which spans chunks drawn from the
whole file."""
NO_RESPONSE = "no response token left"
"""Why the length check counts an encoded example with no trained token as lost."""

Encode = Callable[[list], list[dict]]


def length_check(reader: StreamReader, encode: Encode, max_length: int) -> dict:
    """Encode a stream's first training examples (at most :data:`LENGTH_CHECK_EXAMPLES` of epoch
    0's order) and count those dropped, those left with no response token (or kept with every label
    masked by ``overflow: mask``), truncated and kept."""
    examples = min(reader.size, LENGTH_CHECK_EXAMPLES)
    items = reader.items(0, 0, examples)
    dropped: Counter = Counter()
    truncated = kept = 0
    while block := list(islice(items, 512)):
        for encoded in encode([reader.example(item) for item in block]):
            if "dropped" in encoded:
                dropped[encoded["dropped"]] += 1
            elif encoded.get("masked"):
                dropped[MASKED] += 1
            elif all(label == IGNORE_INDEX for label in encoded["labels"]):
                dropped[NO_RESPONSE] += 1
            else:
                kept += 1
                truncated += encoded["truncated"]
    return {
        "max_length": max_length,
        "examples": examples,
        "pass_examples": reader.size,
        "dropped": dict(dropped),
        "truncated": truncated,
        "kept": kept,
    }


def length_checks(
    readers: Sequence[StreamReader], counts: Sequence[int], encode: Encode, max_length: int
) -> list[Optional[dict]]:
    """:func:`length_check` of each stream the epoch trains on (None for one it leaves out)."""
    return [
        length_check(reader, encode, max_length) if count else None
        for reader, count in zip(readers, counts)
    ]


def judge_length_checks(
    readers: Sequence[StreamReader],
    checks: Sequence[Optional[dict]],
    max_length: int,
    overflow: Overflow,
) -> None:
    """Raise a ValueError naming every stream and its counts when no example is kept; warn about
    a stream that loses more than half its examples."""
    trained = [(r, c) for r, c in zip(readers, checks) if c is not None]
    if not any(c["kept"] for _, c in trained):
        streams = "; ".join(
            f"{r.stream.label} ({r.stream.path}): {stream_counts_text(r, c)}" for r, c in trained
        )
        truncate = ", or set overflow: truncate" if overflow == "drop" else ""
        raise ValueError(
            f"nothing to train on: no training example keeps a response token within "
            f"max_length {max_length} (overflow {overflow}). {streams}. Raise max_length "
            f"above the prompts' length (`data stats` shows the lengths){truncate}, or check "
            "that the files hold the records the streams expect"
        )
    for reader, check in trained:
        lost = check["examples"] - check["kept"]
        if 2 * lost > check["examples"]:
            checked = "" if check["examples"] == check["pass_examples"] else " checked"
            rank_zero_warn(
                f"stream {reader.stream.label}: {lost} of {check['examples']} training "
                f"examples{checked} lost to max_length {max_length} "
                f"({reasons_text(check['dropped'])}); raise max_length to train on them"
            )
