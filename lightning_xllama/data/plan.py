"""The epoch plan: how many examples each stream gives an epoch, from the streams' sizes.

A :class:`DataPlan` holds what the user asked for (each stream's weight or count, the stop rule,
``examples_per_epoch``) and turns the streams' sizes into per-stream counts and passes
(:meth:`DataPlan.epoch`), with the warnings a person should see (a stream repeated more than
twice an epoch, or more than half unseen). Plain values in, plain values out: no reader, no
tokenizer, no Trainer. The rules themselves are ``data/mixing.py``'s; allocation files set the
shares (:func:`apply_allocation`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from lightning_xllama.data.allocation import read_allocation
from lightning_xllama.data.mixing import (
    REPEAT_WARNING,
    STOP_RULES,
    UNSEEN_WARNING,
    StopRule,
    epoch_counts,
)


class Shared(Protocol):
    """What the plan reads of a stream (:class:`~lightning_xllama.data.streams.Stream` has it)."""

    label: str
    weight: Optional[float]
    count: Optional[int]
    multiplicity: int


@dataclass(frozen=True)
class Share:
    """One stream's part of a plan, for a plan built without streams (tests, tools).

    Args:
        label: the stream's name in messages.
        weight: its share as a ratio to the other weights (None: 1, or every example once).
        count: records drawn an epoch instead of a weight.
        multiplicity: examples per record (2 for pairs read in both directions).
    """

    label: str
    weight: Optional[float] = None
    count: Optional[int] = None
    multiplicity: int = 1


@dataclass(frozen=True)
class Epoch:
    """An epoch as planned: per stream, its examples and how many times it is read through."""

    counts: list[int]
    passes: list[Optional[float]]
    """``count / size`` rounded to 4 places; None for an empty stream."""
    warnings: list[str]
    """A stream repeated more than twice, or more than half unseen, one line each."""


@dataclass(frozen=True)
class DataPlan:
    """Streams' shares + stop rule + epoch size -> examples of each stream an epoch.

    Args:
        streams: the streams in mixing order (anything with ``label``, ``weight``, ``count``
            and ``multiplicity``: a ``Stream`` or a :class:`Share`).
        stop: the stop rule for weighted streams (see ``data/mixing.py``); None: :attr:`stop_rule`.
        examples_per_epoch: the epoch size of the ``total`` rule (default: the sizes summed).
    """

    streams: Sequence[Shared]
    stop: Optional[StopRule] = None
    examples_per_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        if self.stop is not None and self.stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {STOP_RULES}, got {self.stop!r}")
        counted = [s.label for s in self.streams if s.count is not None]
        weighted = [s.label for s in self.streams if s.weight is not None]
        if counted and weighted:
            raise ValueError(
                f"streams {counted} have counts and {weighted} weights: give every stream a count "
                "(a stream without one takes all its records once), or use weights only"
            )
        if counted and self.examples_per_epoch is not None:
            raise ValueError(
                "examples_per_epoch splits weights; with counts the epoch is their sum"
            )

    @property
    def counted(self) -> bool:
        """Streams set counts (the stop rule does not apply)."""
        return any(s.count is not None for s in self.streams)

    @property
    def stop_rule(self) -> StopRule:
        """The rule in force: ``stop`` if given; else ``total`` when a stream has a weight or
        ``examples_per_epoch`` is set; else every example once an epoch (the paper's epochs)."""
        if self.stop is not None:
            return self.stop
        if self.examples_per_epoch is not None or any(s.weight is not None for s in self.streams):
            return "total"
        return "all_exhausted_without_replacement"

    def counts(self, sizes: Sequence[int]) -> list[int]:
        """Examples each stream gives an epoch, given each stream's training examples of one
        pass. Raises ValueError when a stream with a positive weight would get none."""
        if len(sizes) != len(self.streams):
            raise ValueError(f"{len(self.streams)} streams but {len(sizes)} sizes")
        if self.counted:
            return [
                s.count * s.multiplicity if s.count is not None else size
                for s, size in zip(self.streams, sizes)
            ]
        weights = self.weights
        rule = self.stop_rule
        counts = epoch_counts(sizes, weights, rule, self.examples_per_epoch)
        starved = [s.label for s, w, c in zip(self.streams, weights, counts) if w > 0 and c == 0]
        if starved:
            raise ValueError(
                f"stream(s) {starved} have a positive weight but get 0 examples an epoch "
                f"({rule} rule, epoch counts {counts}): raise their weight or "
                "examples_per_epoch, or set their weight to 0 to leave them out on purpose"
            )
        return counts

    @property
    def weights(self) -> list[float]:
        """Each stream's weight, 1 where unset."""
        return [1.0 if s.weight is None else s.weight for s in self.streams]

    def epoch(self, sizes: Sequence[int]) -> Epoch:
        """:meth:`counts`, the passes they make through each stream, and the warnings."""
        counts = self.counts(sizes)
        passes = [round(c / size, 4) if size else None for c, size in zip(counts, sizes)]
        return Epoch(counts, passes, self.warnings(sizes, counts))

    def warnings(self, sizes: Sequence[int], counts: Sequence[int]) -> list[str]:
        """A line for each stream an epoch repeats more than twice or leaves half unseen."""
        if self.counted:
            return []
        lines = []
        for stream, size, count in zip(self.streams, sizes, counts):
            passes = count / size if size else 0.0
            if passes > REPEAT_WARNING or (count and 1 - passes > UNSEEN_WARNING):
                what = (
                    f"each example is seen about {passes:.1f} times"
                    if passes > REPEAT_WARNING
                    else f"{1 - passes:.0%} of its examples are left unseen"
                )
                lines.append(
                    f"stream {stream.label}: {what} an epoch ({count} of {size} under the "
                    f"{self.stop_rule} rule and these weights). Leave out weights and stop to "
                    "train on every example once an epoch, as the paper does."
                )
        return lines


def apply_allocation(streams: list, path: str) -> list:
    """Streams with the counts or weights of an allocation file (``scaling.read_allocation``).

    Each entry names a stream by kind, language and (optionally) direction ``en-zh`` or
    ``zh-en``; it must match exactly one configured stream, which must not set its own share.
    """
    document = read_allocation(path)
    streams = list(streams)
    for position, entry in enumerate(document["streams"]):
        where = f"{path}: streams[{position}]"
        matches = [i for i, s in enumerate(streams) if _allocation_matches(s, entry)]
        if len(matches) != 1:
            found = "no stream" if not matches else f"{len(matches)} streams"
            raise ValueError(
                f"{where} ({entry['kind']}, {entry['lang']}, "
                f"{entry.get('direction', 'any direction')}) matches {found}; "
                f"configured streams: {[s.label for s in streams]}"
            )
        stream = streams[matches[0]]
        if stream.count is not None or stream.weight is not None:
            raise ValueError(
                f"{where}: stream {stream.label} already sets its count or weight in the config"
            )
        streams[matches[0]] = dataclasses.replace(
            stream, count=entry.get("count"), weight=entry.get("weight")
        )
    return streams


def _allocation_matches(stream, entry: dict) -> bool:
    if stream.kind != entry["kind"] or stream.lang != entry["lang"]:
        return False
    direction = entry.get("direction")
    if direction is None:
        return True
    wanted = {f"en-{stream.lang}": "en-x", f"{stream.lang}-en": "x-en"}.get(direction)
    return wanted is not None and stream.direction in (wanted, "both")
