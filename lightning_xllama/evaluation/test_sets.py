"""Which test sets an evaluation reads, and the evenly spread subset it evaluates on.

Translation (:class:`~lightning_xllama.callbacks.TranslationEvaluation`) and the representation
probe (:class:`~lightning_xllama.callbacks.RepresentationProbe`) read the same parallel test sets,
named by the same arguments: :class:`ParallelTestSets` holds them and reads the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

from lightning_xllama.data.eval_sets import (
    FloresSplit,
    FloresVersion,
    parse_direction,
    read_test_pairs,
)

T = TypeVar("T")


def evenly_spaced(items: Sequence[T], count: Optional[int]) -> list[T]:
    """``count`` items spread over the whole sequence (all of them when ``count`` is None).

    Test sets are ordered by document: the first N items would all come from a few documents.
    """
    if count is not None and count < 1:
        raise ValueError(f"expected a subset size of at least 1, got {count}")
    if count is None or count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


@dataclass
class ParallelTestSets:
    """Aligned test sets, one per ``src-tgt`` direction: your files ``{test_prefix}.{src}`` and
    ``{test_prefix}.{tgt}``, or a FLORES-101/200 folder (``flores_dir``, ``flores_split``,
    ``flores_version``); see :func:`~lightning_xllama.data.eval_sets.read_test_pairs`.

    ``user`` names the evaluation in the error raised when ``directions`` is empty.
    """

    directions: list[str]
    test_prefix: Optional[str] = None
    flores_dir: Optional[str] = None
    flores_split: FloresSplit = "devtest"
    flores_version: FloresVersion = "flores101"
    user: str = "the evaluation"

    def __post_init__(self) -> None:
        if not self.directions:
            raise ValueError(f"{self.user} needs at least one direction, e.g. [en-zh]")
        self.directions = list(self.directions)

    def read(
        self, count: Optional[int] = None, min_pairs: int = 0, why: str = ""
    ) -> dict[str, list[tuple[str, str]]]:
        """Per direction, ``count`` sentence pairs spread evenly over its set (all when None).

        A set with fewer than ``min_pairs`` pairs fails (``why`` says who needs them)."""
        sets = {}
        for direction in self.directions:
            src, tgt = parse_direction(direction)
            pairs = read_test_pairs(
                src, tgt, self.test_prefix, self.flores_dir, self.flores_split, self.flores_version
            )
            if len(pairs) < min_pairs:
                raise ValueError(
                    f"{direction}: {why or self.user} needs at least {min_pairs} sentence pairs, "
                    f"the set has {len(pairs)}"
                )
            sets[direction] = evenly_spaced(pairs, count)
        return sets

    def languages(self) -> list[str]:
        """The source and target language of every direction, in order."""
        return [code for direction in self.directions for code in parse_direction(direction)]
