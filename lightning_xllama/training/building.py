"""Building the Hugging Face model where the strategy needs it, without a full copy of the
weights per rank, and preparing it for training (chunked-loss head, compiled layers, activation
checkpointing).

- ``ModelParallelStrategy`` (FSDP2): every rank builds the model on the meta device, shards it
  per decoder layer and then at the root, and receives its shards of rank 0's weights.
- ``DecoderFSDPStrategy`` (FSDP1): rank 0 loads the weights on CPU, the others build on the
  meta device; FSDP broadcasts rank 0's weights as it wraps the layers.
- otherwise (one device, DDP): ``from_pretrained`` on every rank.

With ``lora_rank`` set, :func:`lightning_xllama.training.lora.apply_lora` wraps the model in peft's LoRA
adapters right after it is built (under FSDP2 before ``fully_shard``), the base weights frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_xllama.training.attention import dropped_softcapping
from lightning_xllama.training.chunked_loss import install_chunked_loss_head
from lightning_xllama.training.lora import apply_lora, quantized_base
from lightning_xllama.training.strategies import (
    decoder_layers,
    empty_model,
    load_into_shards,
    shard_fsdp2,
)


@dataclass(frozen=True)
class ModelSettings:
    """What :func:`build_model` needs of ``XLlamaModule``'s arguments (same names)."""

    model_name_or_path: str
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    loss_chunk_size: Optional[int] = 1024
    compile_layers: bool = False
    lora_rank: Optional[int] = None
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_target_modules: Optional[Sequence[str]] = None
    lora_quantize: Optional[str] = None


def build_model(settings: ModelSettings, strategy=None, device_mesh=None) -> nn.Module:
    """The model of ``settings`` in training mode, built for ``strategy`` (None: one process);
    ``device_mesh`` is the module's mesh under ``ModelParallelStrategy``."""
    s = settings
    if s.lora_rank is not None and isinstance(strategy, FSDPStrategy):
        raise ValueError(
            "LoRA (lora_rank) runs on one device, DDP or FSDP2, not FSDPStrategy (FSDP1 would need "
            "use_orig_params for its frozen base weights): use "
            "lightning_xllama.strategies.DecoderFSDP2Strategy"
        )
    if s.compile_layers and isinstance(strategy, FSDPStrategy):
        raise ValueError(
            "compile_layers runs on one device, DDP or FSDP2, not FSDPStrategy: under FSDP1's mixed "
            "precision a parameter holds bf16 data beside an fp32 gradient, which torch.compile "
            "refuses from the second step on (torch 2.11, H200); use "
            "lightning_xllama.strategies.DecoderFSDP2Strategy"
        )
    if s.lora_quantize is not None and isinstance(strategy, ModelParallelStrategy):
        raise ValueError("lora_quantize (QLoRA) runs on one device or DDP, not FSDP2")
    if isinstance(strategy, ModelParallelStrategy):
        model = fsdp2_model(s, strategy, device_mesh)
    elif s.lora_quantize is not None:
        model = quantized_base(s, strategy.root_device if strategy else torch.device("cpu"))
    elif (
        isinstance(strategy, FSDPStrategy)
        and strategy.kwargs.get("sync_module_states")
        and strategy.global_rank
    ):
        model = empty_model(s.model_name_or_path, s.attn_implementation, s.trust_remote_code)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            s.model_name_or_path,
            attn_implementation=s.attn_implementation,
            trust_remote_code=s.trust_remote_code,
            use_safetensors=None,
        )
    model.train()  # from_pretrained returns eval mode; Lightning switches modes per loop
    dropped = dropped_softcapping(model.config)
    if dropped:
        rank_zero_warn(dropped)
    if s.gradient_checkpointing and not model.is_gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if not isinstance(strategy, ModelParallelStrategy):
        if s.lora_rank is not None:
            model = apply_lora(model, s)
        prepare_for_training(model, s)
    return model


def fsdp2_model(settings: ModelSettings, strategy: ModelParallelStrategy, device_mesh) -> nn.Module:
    """FSDP2 over the data-parallel ranks: meta-device build, ``fully_shard``, weights into shards.

    Settings come from :class:`~lightning_xllama.strategies.DecoderFSDP2Strategy`; under a plain
    ``ModelParallelStrategy`` the layers compute in fp32.
    """
    s = settings
    if device_mesh["tensor_parallel"].size() > 1:
        raise ValueError(
            "XLlamaModule shards with FSDP2 only (no tensor parallelism), but the strategy's mesh has "
            f"tensor_parallel_size {device_mesh['tensor_parallel'].size()}. Use "
            "lightning_xllama.strategies.DecoderFSDP2Strategy, or ModelParallelStrategy with "
            "tensor_parallel_size: 1 and data_parallel_size set to the number of devices."
        )
    model = empty_model(s.model_name_or_path, s.attn_implementation, s.trust_remote_code)
    if getattr(strategy, "activation_checkpointing", False):
        enable_gradient_checkpointing(model)
    adapt = None
    if s.lora_rank is not None:  # adapters sharded with their layers: DTensors too

        def adapt(pretrained: nn.Module) -> nn.Module:
            return apply_lora(pretrained, s)

        model = adapt(model)
    prepare_for_training(model, s)  # before sharding, as FSDP2 expects
    shard_fsdp2(
        model,
        device_mesh["data_parallel"],
        getattr(strategy, "param_dtype", "fp32"),
        getattr(strategy, "reduce_dtype", "fp32"),
    )
    load_into_shards(
        model, s.model_name_or_path, strategy.root_device, s.trust_remote_code, adapt=adapt
    )
    return model


def prepare_for_training(model: nn.Module, settings: ModelSettings) -> None:
    """The chunked-loss head and compiled layers, on the unsharded model."""
    if settings.loss_chunk_size is not None:
        install_chunked_loss_head(model)
    if settings.compile_layers:
        compile_decoder_layers(model)


def compile_decoder_layers(model) -> None:
    """``torch.compile`` each decoder layer in place (parameter names unchanged): one graph per
    layer class, reused by every layer, fusing its element-wise kernels."""
    for layer in decoder_layers(model):
        layer.compile()


def enable_gradient_checkpointing(model) -> None:
    """Hugging Face's per-decoder-layer checkpointing, non-reentrant (parameter names unchanged)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
