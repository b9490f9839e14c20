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

Sliding windows (Mistral; Gemma-2 and Qwen2 on their ``sliding_attention`` layers) hold in each
path, within each example: see :func:`packed_attention_inputs`.

Outside packed training (padded batches, generation) ``sdpa_varlen`` is plain ``sdpa``, but
for Gemma-2's attention soft-capping, which it applies as eager attention does (transformers'
``sdpa`` drops it).
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
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal sdpa per example of a packed batch; plain sdpa when no boundaries are given.

    ``query`` is (batch, heads, length, head_dim); the result is (batch, length, heads, head_dim),
    as every transformers attention function returns it. The layer's ``sliding_window``
    (Mistral, Gemma-2's local layers) limits each example's attention to its last
    ``sliding_window`` tokens; Gemma-2's ``softcap`` (which transformers' sdpa drops) caps the
    scores, packed or not, as eager attention does.
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if cu_seq_lens_q is None:
        if softcap is None:
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
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        out = _softcapped_attention(query, key, value, attention_mask, dropout, scaling, softcap)
        return out.transpose(1, 2).contiguous(), None
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
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        piece = slice(start, end)
        n = end - start
        if softcap is None and (sliding_window is None or n <= sliding_window):
            pieces.append(
                F.scaled_dot_product_attention(
                    q[:, piece],
                    k[:, piece],
                    v[:, piece],
                    dropout_p=dropout,
                    scale=scaling,
                    is_causal=True,
                )
            )
            continue
        position = torch.arange(n, device=q.device)
        mask = block_causal_mask(position, sliding_window)[0]
        if softcap is None:
            pieces.append(
                F.scaled_dot_product_attention(
                    q[:, piece],
                    k[:, piece],
                    v[:, piece],
                    attn_mask=mask,
                    dropout_p=dropout,
                    scale=scaling,
                )
            )
        else:
            pieces.append(
                _softcapped_attention(
                    q[:, piece], k[:, piece], v[:, piece], mask, dropout, scaling, softcap
                )
            )
    out = torch.cat(pieces, dim=1).reshape(heads, batch, length, head_dim)
    return out.permute(1, 2, 0, 3).contiguous(), None


def _softcapped_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: Optional[torch.Tensor],
    dropout: float,
    scaling: Optional[float],
    softcap: float,
) -> torch.Tensor:
    """Attention with Gemma-2's score capping ``softcap * tanh(scores / softcap)``, as its eager
    attention computes it; ``mask`` boolean (True: attend) or additive, None: causal."""
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    scores = torch.tanh(scores / softcap) * softcap
    if mask is None:  # causal, the queries being the last of the keys
        q_len, k_len = scores.shape[-2:]
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + mask[..., : key.shape[-2]]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return torch.matmul(probs, value)


def dropped_softcapping(config) -> Optional[str]:
    """Why the model of ``config`` would train with other attention than it was trained with, or
    None: transformers' ``sdpa`` has no score soft-capping (Gemma-2's ``attn_logit_softcapping``),
    so its scores are no longer capped; ``sdpa_varlen``, ``eager``, flex and flash apply it."""
    cap = getattr(config, "attn_logit_softcapping", None)
    if cap is None or config._attn_implementation != "sdpa":
        return None
    return (
        f"{type(config).__name__} caps attention scores (attn_logit_softcapping={cap}), which "
        "transformers' sdpa attention leaves out: the model trains and generates with other "
        "attention than it was pretrained with. Use attn_implementation 'sdpa_varlen' or 'eager' "
        "(and load the export with the same)"
    )


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


def sliding_windows(config) -> dict[Optional[str], Optional[int]]:
    """The sliding window of each kind of attention layer of a Hugging Face ``config``.

    Models whose config lists ``layer_types`` (Gemma-2, Qwen2, ...) take one mask per layer type
    (``full_attention``, ``sliding_attention``): the keys are those types. Others (LLaMA,
    Mistral) take one mask for all layers: the key is None, the value Mistral's
    ``sliding_window`` or None.
    """
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not layer_types:
        return {None: window}
    known = {"full_attention": None, "sliding_attention": window}
    unknown = sorted(set(layer_types) - set(known))
    if unknown:
        raise ValueError(
            f"packed training with a dense mask knows the layer types {sorted(known)}; "
            f"{type(config).__name__} also has {unknown}: use attn_implementation "
            "'sdpa_varlen' or 'flex_attention'"
        )
    if "sliding_attention" in layer_types and window is None:
        raise ValueError(
            f"{type(config).__name__} has sliding_attention layers but no sliding_window"
        )
    return {kind: known[kind] for kind in dict.fromkeys(layer_types)}


def packed_attention_inputs(batch: dict, config, dtype: torch.dtype) -> dict:
    """The model's keyword arguments that keep a packed batch's examples apart (see the module
    docstring), for the model of ``config`` (its ``_attn_implementation`` and sliding windows);
    nothing here reads a tensor's values on the host.

    Sliding windows hold in every path: flex's document mask and the flash kernels get them
    from transformers, ``sdpa_varlen`` from each layer's ``sliding_window``, and the dense
    masks of ``sdpa`` and ``eager`` are banded here (one per layer type where the model takes
    a mapping).
    """
    attn_implementation = config._attn_implementation
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

    def dense(window: Optional[int]) -> torch.Tensor:
        mask = block_causal_mask(batch["position_ids"], window)
        return additive_mask(mask, dtype) if attn_implementation == "eager" else mask

    windows = sliding_windows(config)
    if None in windows:
        inputs["attention_mask"] = dense(windows[None])
    else:
        inputs["attention_mask"] = {kind: dense(window) for kind, window in windows.items()}
    return inputs
