"""The structure of a Hugging Face decoder model: its decoder layers (the unit both strategies
shard, checkpoint and compile), its meta-device build, and its rotary buffers."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def decoder_layer_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The classes of the decoder layers in ``model`` (any module holding a Hugging Face model).

    Taken from the ``_no_split_modules`` of the Hugging Face model inside: the blocks that must
    stay whole on one device are the units to shard and checkpoint.
    """
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        found = sorted(names) or "nothing (no _no_split_modules)"
        raise ValueError(
            f"cannot find the decoder layers of {type(model).__name__}: its Hugging Face model names "
            f"{found} as layers to keep whole, and no module has that class. Expected a decoder model "
            "such as LlamaForCausalLM (LlamaDecoderLayer)."
        )
    return classes


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    classes = tuple(decoder_layer_classes(model))
    return [m for m in model.modules() if isinstance(m, classes)]


def empty_model(
    name: str, attn_implementation: str = "sdpa", trust_remote_code: bool = False
) -> nn.Module:
    """The model of ``name`` (folder or hub name) on the meta device: shapes, no memory, no weights.

    The generation config comes from the folder when it has one, as ``from_pretrained`` does.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            dtype=torch.float32,
        )
    with contextlib.suppress(
        OSError
    ):  # no generation_config.json: keep the one derived from the config
        model.generation_config = GenerationConfig.from_pretrained(name)
    return model


def reset_rotary_buffers(model: nn.Module, device: torch.device) -> int:
    """Recompute rotary embeddings' ``inv_freq`` (and what is derived from it) on ``device``.

    The buffer is not persistent, so no state dict restores it: after meta-device or empty
    initialisation it holds whatever memory it was given. Each rotary module is rebuilt from its
    own config, which is how the model computed it in the first place. Returns how many were reset.
    """
    reset = 0
    for module in model.modules():
        if "inv_freq" not in module._buffers:
            continue
        fresh = type(module)(getattr(module, "config", None), device=device)
        for buffer in fresh._buffers:
            module._buffers[buffer] = fresh._buffers[buffer]
        for attribute in ("original_inv_freq", "attention_scaling"):
            if hasattr(fresh, attribute):
                setattr(module, attribute, getattr(fresh, attribute))
        reset += 1
    return reset
