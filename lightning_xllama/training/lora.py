"""LoRA through ``peft``: low-rank adapters on the decoder layers' linear projections, the base
model frozen, for tuning a 7B model on one GPU.

``XLlamaModule(lora_rank=...)`` turns it on; :func:`lightning_xllama.training.building.build_model` wraps
the Hugging Face model with :func:`apply_lora` for every strategy (under FSDP2 before
``fully_shard``, so the adapters are sharded with their layers and become DTensors). Only the
trainable tensors are checkpointed (:func:`checkpointed_keys`): the frozen base weights come back
from the base model folder. QLoRA (``lora_quantize: nf4``) loads the base in 4-bit through
bitsandbytes, on a CUDA GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, Optional, Sequence

import torch
from torch import nn

from lightning_xllama.training.strategies.layers import decoder_layers

LoraQuantize = Literal["nf4"]
INSTALL_HINT = "pip install 'lightning_xllama[lora]'"


def check_lora_arguments(
    rank: Optional[int],
    alpha: float,
    dropout: float,
    target_modules: Optional[Sequence[str]],
    quantize: Optional[str],
) -> None:
    """Refuse LoRA settings that cannot work, before anything is loaded (``XLlamaModule`` calls
    this with its ``lora_*`` arguments)."""

    def fail(name: str, expected: str, value) -> None:
        raise ValueError(f"XLlamaModule: {name} must be {expected}, got {value!r}")

    if rank is not None and (isinstance(rank, bool) or not hasattr(rank, "__index__") or rank < 1):
        fail("lora_rank", "a whole number >= 1 (the adapters' rank) or None (full tuning)", rank)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        fail("lora_alpha", "> 0", alpha)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        fail("lora_dropout", "in [0, 1)", dropout)
    if target_modules is not None and (
        isinstance(target_modules, str)
        or not target_modules
        or not all(isinstance(t, str) and t for t in target_modules)
    ):
        fail("lora_target_modules", "a non-empty list of module names, or None", target_modules)
    if quantize not in (None, "nf4"):
        fail("lora_quantize", "'nf4' or None", quantize)
    if rank is None:
        if quantize is not None:
            fail("lora_rank", "set when lora_quantize is (QLoRA trains adapters)", rank)
        return
    if importlib.util.find_spec("peft") is None:
        raise ImportError(f"XLlamaModule: lora_rank={rank} needs the peft package: {INSTALL_HINT}")


def target_module_names(model: nn.Module, requested: Optional[Sequence[str]]) -> list[str]:
    """The module names LoRA adapts: ``requested`` checked against the model, or by default every
    ``nn.Linear`` inside the decoder layers (LLaMA: q/k/v/o_proj, gate/up/down_proj).

    peft matches a name against the end of each module's path; every module a requested name
    matches must be an ``nn.Linear`` inside a decoder layer (not the embeddings or the LM head,
    whose chunked loss needs a plain weight), and each name must match one.
    """
    inside = {
        id(m)
        for layer in decoder_layers(model)
        for m in layer.modules()
        if isinstance(m, nn.Linear)
    }
    available = sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if id(m) in inside}
    )
    for target in available if requested is None else requested:
        matched = [
            (name, m)
            for name, m in model.named_modules()
            if name == target or name.endswith("." + target)
        ]
        wrong = [name for name, m in matched if id(m) not in inside]
        if not matched or wrong:
            problem = "matches no module" if not matched else f"matches {wrong[0]}, outside them"
            raise ValueError(
                f"lora_target_modules: {target!r} {problem}; expected names of nn.Linear modules "
                f"inside the decoder layers of {type(model).__name__}: {', '.join(available)}"
                + (" (set lora_target_modules to names found only there)" if not requested else "")
            )
    return available if requested is None else list(requested)


def apply_lora(model: nn.Module, settings) -> nn.Module:
    """``model`` wrapped by peft with the LoRA adapters of ``settings`` (``ModelSettings``): a
    ``PeftModelForCausalLM`` whose base weights are frozen. A meta-device model gets meta adapters,
    filled later with the rest of the weights."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=target_module_names(model, settings.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def quantized_base(settings, device: torch.device) -> nn.Module:
    """QLoRA's base model: ``from_pretrained`` with NF4 4-bit weights (bitsandbytes, double
    quantisation, bf16 compute) on ``device``, prepared for k-bit training."""
    bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    if device.type != "cuda" or not bitsandbytes:
        raise RuntimeError(
            f"lora_quantize={settings.lora_quantize!r} (QLoRA) needs a CUDA GPU and the "
            f"bitsandbytes package (found device {device}, bitsandbytes "
            f"{'installed' if bitsandbytes else 'missing'}); without them use plain LoRA "
            "(lora_quantize: null) with precision bf16-true"
        )
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(
        settings.model_name_or_path,
        attn_implementation=settings.attn_implementation,
        trust_remote_code=settings.trust_remote_code,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        device_map={"": device},
    )
    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def checkpointed_keys(model: nn.Module) -> list[str]:
    """The keys of ``model.state_dict()`` a checkpoint holds: the trainable parameters and the
    persistent buffers (with LoRA, the adapters; in full tuning, everything). Frozen weights and
    what a quantised base adds to its state dict (bitsandbytes' ``absmax``, ``quant_map``...)
    come back from the base model folder."""
    kept = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    kept |= {n for n, _ in model.named_buffers(remove_duplicate=False)}
    return [k for k in model.state_dict() if k in kept]


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """Trainable and total parameters, global sizes (a sharded DTensor counts whole)."""
    parameters = list(model.parameters())
    return (
        sum(p.numel() for p in parameters if p.requires_grad),
        sum(p.numel() for p in parameters),
    )
