"""Filling a sharded meta-device model with the pretrained weights of rank 0."""

from __future__ import annotations

import torch
from torch import nn

from lightning_xllama import distributed
from lightning_xllama.strategies.layers import reset_rotary_buffers


def load_into_shards(
    model: nn.Module, name: str, device: torch.device, trust_remote_code: bool = False
) -> None:
    """Give a sharded meta-device ``model`` the pretrained weights of ``name``.

    Rank 0 loads the weights once on CPU (``from_pretrained``, so every format and key renaming of
    transformers applies); each tensor is broadcast in turn and every rank keeps only its shard.
    Then the rotary buffers, which no state dict carries, are recomputed.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoModelForCausalLM

    model.to_empty(device=device)
    broadcast = distributed.is_initialized()
    full: dict[str, torch.Tensor] = {}
    if distributed.rank() == 0:
        pretrained = AutoModelForCausalLM.from_pretrained(
            name, trust_remote_code=trust_remote_code, use_safetensors=None
        )
        full = pretrained.state_dict()
    set_model_state_dict(
        model,
        full,
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast, strict=True),
    )
    reset_rotary_buffers(model, device)
