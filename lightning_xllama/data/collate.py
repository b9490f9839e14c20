"""Dynamic padding: each batch is padded to its own longest example."""

from __future__ import annotations

import numpy as np
import torch

from lightning_xllama.data.encoding import IGNORE_INDEX


def loss_positions(labels: np.ndarray) -> torch.Tensor:
    """Flat indices of the (rows x width) positions whose next token is trained on: the only
    positions whose logits the loss needs (prompt positions are most of an instruction batch).
    Found here, on the loader's side, so the training step never waits for the device."""
    following = np.full_like(labels, IGNORE_INDEX)
    following[:, :-1] = labels[:, 1:]
    return torch.from_numpy(np.flatnonzero(following != IGNORE_INDEX))


class PadCollator:
    """Right-pads ``input_ids`` with the pad id and ``labels`` with the ignore index; adds
    :func:`loss_positions`.

    Built with numpy, which is single-threaded: torch's small ops on the main process's cores
    would contend with training for them.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in examples)
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(examples), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
        attention_mask = np.zeros((len(examples), width), dtype=np.int64)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = example["input_ids"]
            labels[row, :n] = example["labels"]
            attention_mask[row, :n] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask),
            "loss_positions": loss_positions(labels),
        }
