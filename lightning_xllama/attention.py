"""Attention over packed rows that never crosses an example's border, at the examples' cost.

A packed batch (``data/packing.py``) carries per-example ``position_ids`` (restarting at 0 for
each example and for the padding tail of a row) and ``cu_seq_lens``, the examples' boundaries
over the flattened rows. How each ``attn_implementation`` keeps the examples apart:

- ``flex_attention`` (GPUs): no mask is passed; transformers finds the examples from the position
  ids and builds a block-sparse document mask, so fully masked blocks cost nothing.
- ``flash_attention_2`` / ``flash_attention_3``: the varlen kernel over ``cu_seq_lens``.
- ``sdpa_varlen`` (registered here; the path for CPUs, where FlexAttention has no backward):
  causal ``scaled_dot_product_attention`` over each example's slice of the flattened rows.
- ``sdpa`` and ``eager``: the fallback, a dense block-diagonal 4D mask built on the device from
  the position ids, whose cost is the square of the row, not of each example.

Outside packed training (padded batches, generation) ``sdpa_varlen`` is plain ``sdpa``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from lightning_xllama.data.packing import additive_mask, block_causal_mask

SDPA_VARLEN = "sdpa_varlen"
VARLEN_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", SDPA_VARLEN)
"""Implementations that take the examples' boundaries (``cu_seq_lens``) as keyword arguments."""
DOCUMENT_MASKED_IMPLEMENTATIONS = ("flex_attention", *VARLEN_IMPLEMENTATIONS)
"""Implementations whose cost on a packed row is what its examples cost."""


def sdpa_varlen_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    cu_seq_lens_q: Optional[torch.Tensor] = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal sdpa per example of a packed batch; plain sdpa when no boundaries are given.

    ``query`` is (batch, heads, length, head_dim); the result is (batch, length, heads, head_dim),
    as every transformers attention function returns it.
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, heads, length, head_dim = query.shape

    def flat(
        x: torch.Tensor,
    ) -> torch.Tensor:  # (batch, heads, length, d) -> (heads, batch * length, d)
        return x.transpose(0, 1).reshape(heads, batch * length, x.shape[-1])

    q, k, v = flat(query), flat(key), flat(value)
    bounds = (
        cu_seq_lens_q.tolist()
    )  # the packed batch's boundaries live on the host's side of a CPU run
    pieces = [
        F.scaled_dot_product_attention(
            q[:, start:end],
            k[:, start:end],
            v[:, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
        )
        for start, end in zip(bounds[:-1], bounds[1:])
    ]
    out = torch.cat(pieces, dim=1).reshape(heads, batch, length, head_dim)
    return out.permute(1, 2, 0, 3).contiguous(), None


def register_attention() -> None:
    """Make ``attn_implementation="sdpa_varlen"`` known to transformers (idempotent).

    Its masks for padded batches and generation are sdpa's.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        AttentionMaskInterface,
        sdpa_mask,
    )

    if SDPA_VARLEN not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_forward)
        AttentionMaskInterface.register(SDPA_VARLEN, sdpa_mask)


def packed_attention_inputs(batch: dict, attn_implementation: str, dtype: torch.dtype) -> dict:
    """The model's keyword arguments that keep a packed batch's examples apart (see the module
    docstring); nothing here reads a tensor's values on the host."""
    inputs: dict = {"position_ids": batch["position_ids"]}
    if attn_implementation == "flex_attention":
        return inputs  # transformers builds the document block mask from the position ids
    if attn_implementation in VARLEN_IMPLEMENTATIONS:
        cu, longest = batch["cu_seq_lens"], batch["max_seq_len"]
        return {
            **inputs,
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
        }
    mask = block_causal_mask(batch["position_ids"])
    inputs["attention_mask"] = (
        additive_mask(mask, dtype) if attn_implementation == "eager" else mask
    )
    return inputs
