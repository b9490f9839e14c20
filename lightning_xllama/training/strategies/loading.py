"""Filling a sharded meta-device model with the pretrained weights of rank 0."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from lightning_xllama.runtime import distributed
from lightning_xllama.training.strategies.checkpoint_shapes import METADATA_FILE
from lightning_xllama.training.strategies.layers import reset_rotary_buffers


def load_into_shards(
    model: nn.Module,
    name: str,
    device: torch.device,
    trust_remote_code: bool = False,
    adapt: Optional[Callable[[nn.Module], nn.Module]] = None,
) -> None:
    """Give a sharded meta-device ``model`` the pretrained weights of ``name``.

    Rank 0 loads the weights once on CPU (``from_pretrained``, so every format and key renaming of
    transformers applies); each tensor is broadcast in turn and every rank keeps only its shard.
    Then the rotary buffers, which no state dict carries, are recomputed. ``adapt`` turns rank 0's
    pretrained model into ``model``'s form (LoRA: the same adapters, freshly initialised there,
    so every rank gets rank 0's initial adapter weights).
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
        full = (adapt(pretrained) if adapt is not None else pretrained).state_dict()
    set_model_state_dict(
        model,
        full,
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast, strict=True),
    )
    reset_rotary_buffers(model, device)


def load_trainable_shards(
    module: nn.Module, optimizers: list, path: Path, weights_only: Optional[bool] = None
) -> dict:
    """Restore a sharded checkpoint folder of the trainable parameters only (LoRA's adapters) and
    their optimizer states into ``module``; returns the checkpoint's other contents.

    Lightning's loader asks the folder for every tensor of the model, the frozen ones too, and
    fails on the first it lacks; here only the trainable ones are read.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = {
        "state_dict": get_model_state_dict(
            module, options=StateDictOptions(ignore_frozen_params=True)
        )
    }
    dcp.load(state, checkpoint_id=path)
    set_model_state_dict(module, state["state_dict"], options=StateDictOptions(strict=False))
    for index, optimizer in enumerate(optimizers):
        key = f"optimizer_{index}"  # as Lightning saves them
        optimizer_state = {key: get_optimizer_state_dict(module, optimizer)}
        dcp.load(optimizer_state, checkpoint_id=path)
        set_optimizer_state_dict(
            module, optimizer, optimizer_state[key], options=StateDictOptions(cpu_offload=True)
        )
    return torch.load(path / METADATA_FILE, map_location="cpu", weights_only=weights_only)
