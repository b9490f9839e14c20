"""Packing: several examples in one row, none attending across its neighbours' borders.

A packed row needs two things with Hugging Face LLaMA (checked in DESIGN.md): position ids that
restart at 0 for each example, and an explicit 4D block-diagonal causal mask. Position ids
alone do not separate examples once a 2D mask or a KV cache is in play: the examples would
silently attend to each other. Padding positions attend only to themselves, so no attention row
is empty (an empty row gives NaN that would leak through the values of later layers).

A packed micro-batch holds the same examples as an unpacked one (``batch_size`` of them): only
the padding goes. So packing changes neither what a step trains on nor how many steps a rank
runs (ranks must agree on that), and its logits equal the unpacked ones.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

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


def block_causal_mask(rows: list[list[int]], width: int) -> torch.Tensor:
    """(rows, 1, width, width) boolean mask for rows holding examples of the given lengths, in
    order from position 0: a token attends to the earlier tokens of its own example; a padding
    token to itself only. Built with numpy: single-threaded, it does not contend with training
    for the cores."""
    longest = max(max(lengths, default=0) for lengths in rows)
    causal = np.tri(longest, dtype=bool)
    mask = np.zeros((len(rows), 1, width, width), dtype=bool)
    for r, lengths in enumerate(rows):
        at = 0
        for n in lengths:
            mask[r, 0, at : at + n, at : at + n] = causal[:n, :n]
            at += n
        padding = np.arange(at, width)
        mask[r, 0, padding, padding] = True
    return torch.from_numpy(mask)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean 4D mask as the additive float mask eager attention adds to its scores."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class PackCollator:
    """Packs a micro-batch's examples into rows with per-example position ids and a 4D mask.

    Args:
        pad_token_id: id written after the last example of a row.
        pack_length: longest row in tokens; None puts the whole micro-batch in one row.
        pad_to_multiple_of: round the row width up to a multiple of this.
    """

    def __init__(self, pad_token_id: int, pack_length: Optional[int] = None, pad_to_multiple_of: int = 1):
        self.pad_token_id, self.pack_length, self.pad_to_multiple_of = pad_token_id, pack_length, pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(e["input_ids"]) for e in examples]
        rows = pack_rows(lengths, self.pack_length)
        longest = max(sum(lengths[i] for i in row) for row in rows)
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        position_ids = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                n = lengths[i]
                input_ids[r, at : at + n] = examples[i]["input_ids"]
                labels[r, at : at + n] = examples[i]["labels"]
                labels[r, at] = IGNORE_INDEX  # predicted from the previous example's last token
                position_ids[r, at : at + n] = np.arange(n)
                at += n
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(position_ids),
            "attention_mask": block_causal_mask([[lengths[i] for i in row] for row in rows], width),
        }
