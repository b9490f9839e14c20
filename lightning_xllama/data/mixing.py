"""Mixing streams by weight into one epoch order, the same for a seed on any number of ranks."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


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


class MixtureSampler(DistributedSampler):
    """Indices into a concatenation of streams, mixed by weight and shuffled per epoch.

    Each stream contributes its count of examples: a stream asked for fewer than it holds is
    sampled without replacement; one asked for more is repeated in fresh shuffles (oversampled).
    The epoch order depends only on the seed and the epoch; ranks take interleaved slices of
    it. Subclassing ``DistributedSampler`` lets Lightning call :meth:`set_epoch` and keep the
    sampler as it is under DDP and FSDP.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        total: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        # DistributedSampler's own __init__ wants a data set; only its fields are used here.
        self.sizes, self.seed = list(sizes), seed
        self.counts = stream_counts(self.sizes, weights, total)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self.num_samples = math.ceil(total / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def epoch_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        indices: list[int] = []
        for size, count, offset in zip(self.sizes, self.counts, self.offsets):
            drawn: list[int] = []
            while len(drawn) < count:
                drawn += torch.randperm(size, generator=generator)[: count - len(drawn)].tolist()
            indices += [offset + i for i in drawn]
        order = torch.randperm(len(indices), generator=generator).tolist()
        mixed = [indices[i] for i in order]
        return mixed + mixed[: self.total_size - len(mixed)]  # equal share for every rank

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
