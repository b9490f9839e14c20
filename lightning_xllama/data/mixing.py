"""Mixing streams: how many examples each stream gives an epoch, which shard reads which, in
what order. Everything here depends only on sizes, weights, the seed and the epoch, so every rank
computes the same plan without talking to the others.

Stop rules (the names of ``datasets.interleave_datasets``, with exact counts instead of draws):

- ``first_exhausted``: the epoch ends when the stream that is shortest for its weight has been
  read once; the others give their weighted share. Nothing repeats; parts of streams are unused.
- ``all_exhausted``: the epoch ends when every stream has been read at least once; streams short
  for their weight are repeated to keep the ratios (oversampling).
- ``all_exhausted_without_replacement``: every example of every stream exactly once (streams of
  weight 0 left out); the ratios are the streams' sizes, not the weights.
- ``total``: ``total`` examples split by weight; a stream asked for more than it holds is
  repeated (oversampling), one asked for fewer gives a random part of itself.

Counts (per stream, or from an allocation file) bypass the rules: exactly that many examples.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np

StopRule = Literal["first_exhausted", "all_exhausted", "all_exhausted_without_replacement", "total"]
STOP_RULES = ("first_exhausted", "all_exhausted", "all_exhausted_without_replacement", "total")
REPEAT_WARNING = 2.0
"""An epoch that goes through a stream more than this many times is warned about."""
UNSEEN_WARNING = 0.5
"""An epoch that leaves more than this share of a stream unseen is warned about."""


def stream_counts(sizes: Sequence[int], weights: Sequence[float], total: int) -> list[int]:
    """Examples drawn from each stream per epoch: ``total`` split in proportion to ``weights``.

    Largest-remainder rounding keeps the counts summing exactly to ``total``.
    """
    if len(sizes) != len(weights):
        raise ValueError(f"{len(sizes)} streams but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {list(weights)}")
    for size, weight in zip(sizes, weights):
        if weight > 0 and size == 0:
            raise ValueError("a stream with a positive weight has no examples")
    share = [total * w / sum(weights) for w in weights]
    counts = [math.floor(s) for s in share]
    by_remainder = sorted(range(len(share)), key=lambda i: counts[i] - share[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def epoch_counts(
    sizes: Sequence[int],
    weights: Sequence[float],
    stop: StopRule = "total",
    total: Optional[int] = None,
) -> list[int]:
    """Examples each stream gives an epoch under a stop rule (see the module docstring).

    ``total`` is used by the ``total`` rule; by default it is the sum of the sizes.
    """
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    if stop == "all_exhausted_without_replacement":
        return [size if weight > 0 else 0 for size, weight in zip(sizes, weights)]
    if stop == "total":
        return stream_counts(sizes, weights, sum(sizes) if total is None else total)
    ratios = [size / weight for size, weight in zip(sizes, weights) if weight > 0]
    length = min(ratios) if stop == "first_exhausted" else max(ratios)
    return stream_counts(sizes, weights, int(round(length * sum(weights))))


def deal(counts: Sequence[int], shards: int) -> np.ndarray:
    """Split each stream's count between ``shards`` so that every shard gets the same total.

    The streams' examples are laid end to end and dealt like cards (example ``k`` to shard
    ``k mod shards``), so each shard holds every stream in proportion. When the total does not
    divide evenly, the deal wraps around to the first streams (a few examples repeated), as a
    ``DistributedSampler`` pads: ranks must run the same number of steps.
    Returns an array (streams, shards).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((len(counts), shards), dtype=np.int64)
    padded = -(-total // shards) * shards
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    shard = np.arange(shards)

    def below(x: np.ndarray) -> np.ndarray:  # how many k < x have k mod shards == shard
        return np.maximum(0, (x[:, None] - shard[None, :] + shards - 1) // shards)

    dealt = np.zeros((len(counts), shards), dtype=np.int64)
    for lap in range(-(-padded // total)):
        low = np.minimum(starts + lap * total, padded)
        high = np.minimum(starts + counts + lap * total, padded)
        dealt += below(high) - below(low)
    return dealt


def shard_order(counts: Sequence[int], seed: int, epoch: int, shard: int) -> np.ndarray:
    """The stream of each slot of a shard's epoch: ``counts[s]`` slots of stream ``s``, shuffled."""
    labels = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
    return np.random.default_rng([seed, epoch, shard, 2]).permutation(labels)
