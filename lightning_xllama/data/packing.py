"""Packing: several examples in one row, none attending across its neighbours' borders.

A packed batch carries what every attention implementation needs to keep the examples apart,
and nothing quadratic in the row width (a dense mask of rows x width^2 bytes is prohibitive for
rows of 16k tokens):

- ``position_ids`` restart at 0 for each example, and for the padding tail of a row, which is
  one more pseudo-example: nothing real attends to it (it comes last), and no attention row is
  empty (an empty row gives NaN that would leak through the values of later layers);
- ``cu_seq_lens``, the segments' boundaries over the flattened rows (FlashAttention varlen's
  ``cu_seqlens``), and ``max_seq_len``, the longest segment.

With Hugging Face LLaMA under sdpa or eager, position ids alone do not separate the examples
(DESIGN.md): the model builds the dense block-diagonal mask on its device from the position ids
(:func:`block_causal_mask`, banded for sliding-window layers; :func:`additive_mask` for eager).

Which examples share a row and a micro-batch is the loader's choice (``data/loader.py``): with
``pack_length`` it packs a buffer of ``group_batches`` micro-batches' examples at once
(:func:`pack_buffer`) and marks each example's ``row``; the collator follows the marks.
"""

from __future__ import annotations

import heapq
from typing import Optional, Sequence

import numpy as np
import torch

from lightning_xllama.data.collate import loss_positions
from lightning_xllama.data.encoding import IGNORE_INDEX


def pack_rows(lengths: Sequence[int], capacity: Optional[int] = None) -> list[list[int]]:
    """Indices of the examples in each row: one row when ``capacity`` is None, otherwise rows of
    at most ``capacity`` tokens filled first-fit by decreasing length."""
    if capacity is None:
        return [list(range(len(lengths)))]
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for row, space in enumerate(free):
            if lengths[i] <= space:
                rows[row].append(i)
                free[row] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return [sorted(row) for row in rows]


def pack_buffer(
    lengths: Sequence[int], batches: int, capacity: Optional[int]
) -> list[list[list[int]]]:
    """Examples of the given lengths packed into rows of at most ``capacity`` tokens and dealt
    into ``batches`` micro-batches: for each micro-batch its rows, each row the indices of its
    examples in increasing order.

    Rows: ``batches * k`` of them for the smallest ``k`` that works, balanced: each example,
    longest first, goes to the least loaded row (LPT scheduling), so the rows end up within
    about a short example of each other, but for rows holding one example longer than that.
    If an example does not fit the least loaded row, ``k`` grows by one; with one example a row
    it always fits. Micro-batches: the rows sorted by load and cut into ``batches`` runs, so a
    micro-batch's rows are alike (its width, the longest, wastes little), the runs chosen to
    make the largest micro-batch tensor (rows x width) as small as it can be, then as even as
    possible (:func:`_cut_runs`): micro-batches of long rows take fewer rows, and every
    micro-batch carries about the same number of tokens. Only with fewer examples than
    ``batches`` are some micro-batches left empty (the last ones). ``capacity`` None: one row
    per micro-batch. Deterministic: ties go to the lower index.
    """
    n = len(lengths)
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    if n == 0:
        return [[] for _ in range(batches)]
    if capacity is not None and max(lengths) > capacity:
        raise ValueError(f"an example of {max(lengths)} tokens does not fit rows of {capacity}")
    order = sorted(range(n), key=lambda i: (-lengths[i], i))
    total = sum(lengths)
    per_batch = 1 if capacity is None else max(1, -(-total // (batches * capacity)))
    while True:
        count = min(batches * per_batch, n)
        heap = [(0, r) for r in range(count)]  # (load, row): already a heap
        members: list[list[int]] = [[] for _ in range(count)]
        for i in order:
            load, r = heapq.heappop(heap)
            if capacity is not None and load + lengths[i] > capacity:
                break
            members[r].append(i)
            heapq.heappush(heap, (load + lengths[i], r))
        else:
            break
        per_batch += 1  # terminates: at count == n every example has a row of its own
    loads = [sum(lengths[i] for i in row) for row in members]
    by_load = sorted(range(count), key=lambda r: (-loads[r], r))
    rows = [sorted(members[r]) for r in by_load]
    if count < batches:  # fewer examples than micro-batches: one row each, the rest empty
        sizes = [1] * count + [0] * (batches - count)
    else:
        sizes = _cut_runs([loads[r] for r in by_load], batches)
    out, at = [], 0
    for size in sizes:
        out.append(rows[at : at + size])
        at += size
    return out


def _cut_runs(loads: list[int], groups: int) -> list[int]:
    """Sizes of ``groups`` consecutive non-empty runs of rows (``loads`` in decreasing order, at
    least ``groups`` of them): a run's cost is its tensor, rows x its first (longest) row.

    The smallest bound on the largest run's cost is found by bisection (cutting greedily from
    the front needs the fewest runs under a bound); under it each run then takes rows up to an
    even share of the tokens left, so the last runs are not left light. Should the even shares
    not fit the bound, the greedy cut is kept, its longest runs halved until there are enough.
    """
    n = len(loads)

    def greedy(bound: int) -> list[int]:
        sizes, i = [], 0
        while i < n:
            j = i + 1
            while j < n and (j + 1 - i) * loads[i] <= bound:
                j += 1
            sizes.append(j - i)
            i = j
        return sizes

    low, high = max(loads[0], -(-sum(loads) // groups)), n * loads[0]
    while low < high:
        middle = (low + high) // 2
        if len(greedy(middle)) <= groups:
            high = middle
        else:
            low = middle + 1
    sizes, i, left_tokens = [], 0, sum(loads)
    for g in range(groups - 1):
        share = left_tokens / (groups - g)
        j, tokens = i + 1, loads[i]
        while (
            j < n - (groups - g - 1)
            and (j + 1 - i) * loads[i] <= low
            and tokens + loads[j] / 2 <= share
        ):
            tokens += loads[j]
            j += 1
        sizes.append(j - i)
        left_tokens -= tokens
        i = j
    sizes.append(n - i)
    if (n - i) * loads[i] <= low:
        return sizes
    sizes = greedy(low)
    while len(sizes) < groups:
        g = max(range(len(sizes)), key=lambda g: (sizes[g], -g))
        sizes[g : g + 1] = [sizes[g] // 2, sizes[g] - sizes[g] // 2]
    return sizes


def block_causal_mask(
    position_ids: torch.Tensor, sliding_window: Optional[int] = None
) -> torch.Tensor:
    """(rows, 1, width, width) boolean mask of a packed batch from its (rows, width) position ids,
    on their device: a token attends to the earlier tokens of its own segment (an example, or
    the padding tail), a segment starting wherever the position id is 0. With
    ``sliding_window`` (Mistral's, Gemma-2's local layers), only to itself and the
    ``sliding_window - 1`` tokens before it, as transformers' own sliding-window mask."""
    if position_ids.dim() == 1:
        position_ids = position_ids[None]
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be a whole number >= 1, got {sliding_window}")
    segment = torch.cumsum(position_ids == 0, dim=-1)
    width = position_ids.shape[-1]
    causal = torch.ones(width, width, dtype=torch.bool, device=position_ids.device).tril()
    mask = (segment[:, :, None] == segment[:, None, :]) & causal
    if sliding_window is not None:  # within a segment, positions count tokens
        mask &= position_ids[:, :, None] - position_ids[:, None, :] < sliding_window
    return mask[:, None]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean 4D mask as the additive float mask eager attention adds to its scores."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(dtype).min
    )


class PackCollator:
    """Packs a micro-batch's examples into rows with per-example position ids and the segments'
    boundaries (see the module docstring).

    Returns ``input_ids`` and ``labels`` (rows, width) int64 (labels -100 on padding and on each
    example's first token, which would be predicted from its neighbour's last one),
    ``position_ids`` (rows, width) int64, ``cu_seq_lens`` int32 (segments + 1) and
    ``max_seq_len`` (int), ``loss_positions`` (``collate.loss_positions``). No attention mask: build it with :func:`block_causal_mask` where
    needed.

    Rows: where every example carries a ``row`` mark (the loader's buffer packing), examples
    with the same mark share a row, in the order given; otherwise the examples are packed with
    :func:`pack_buffer` into one micro-batch's rows of at most ``pack_length`` tokens.

    Args:
        pad_token_id: id written after the last example of a row.
        pack_length: longest row in tokens; None puts the whole micro-batch in one row.
        pad_to_multiple_of: round the row width up to a multiple of this.
    """

    def __init__(
        self, pad_token_id: int, pack_length: Optional[int] = None, pad_to_multiple_of: int = 1
    ):
        self.pad_token_id, self.pack_length, self.pad_to_multiple_of = (
            pad_token_id,
            pack_length,
            pad_to_multiple_of,
        )

    def rows(self, examples: list[dict]) -> list[list[int]]:
        """Indices of the examples in each row."""
        if examples and all("row" in e for e in examples):
            marked: dict[int, list[int]] = {}
            for i, e in enumerate(examples):
                marked.setdefault(e["row"], []).append(i)
            return list(marked.values())
        return pack_buffer([len(e["input_ids"]) for e in examples], 1, self.pack_length)[0]

    def __call__(self, examples: list[dict]) -> dict:
        lengths = [len(e["input_ids"]) for e in examples]
        rows = self.rows(examples)
        longest = max(sum(lengths[i] for i in row) for row in rows)
        if self.pack_length is not None and longest > self.pack_length:
            raise ValueError(
                f"a row of {longest} tokens is longer than pack_length {self.pack_length}"
            )
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        position_ids = np.zeros((len(rows), width), dtype=np.int64)
        segments = []
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                n = lengths[i]
                input_ids[r, at : at + n] = examples[i]["input_ids"]
                labels[r, at : at + n] = examples[i]["labels"]
                labels[r, at] = IGNORE_INDEX  # predicted from the previous example's last token
                position_ids[r, at : at + n] = np.arange(n)
                segments.append(n)
                at += n
            if at < width:  # the padding tail: one more segment, attended to by nothing real
                position_ids[r, at:] = np.arange(width - at)
                segments.append(width - at)
        cu_seq_lens = np.zeros(len(segments) + 1, dtype=np.int32)
        np.cumsum(segments, out=cu_seq_lens[1:])
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(position_ids),
            "cu_seq_lens": torch.from_numpy(cu_seq_lens),
            "max_seq_len": int(max(segments)),
            "loss_positions": loss_positions(labels),
        }
