"""Sharding a Hugging Face decoder model: FSDPStrategy on GPUs, FSDP2 anywhere.

Both strategies shard at the model's decoder layer, found from the model itself: the classes its
``_no_split_modules`` names (``LlamaDecoderLayer`` for LLaMA, ``Qwen2DecoderLayer``,
``MistralDecoderLayer``... for other families), so a recipe never spells a class path.

- :class:`DecoderFSDPStrategy` is Lightning's ``FSDPStrategy`` (FSDP1, CUDA only), as the paper's
  runs: full shard, auto-wrap and activation checkpointing at the decoder layer, bf16 compute with
  fp32 gradient reduction and fp32 buffers (LLaMA's rotary ``inv_freq`` loses precision in bf16),
  full or sharded checkpoints. Only rank 0 loads the pretrained weights; the other ranks build the
  model on the meta device and FSDP broadcasts rank 0's weights as it wraps each layer
  (``sync_module_states``), so a node holds one CPU copy of the weights, not one per GPU.
- :class:`DecoderFSDP2Strategy` is Lightning's ``ModelParallelStrategy`` with every rank
  data-parallel (no tensor parallelism). Lightning leaves the sharding to
  ``LightningModule.configure_model``: ``XLlamaModule`` builds the model on the meta device,
  applies :func:`shard_fsdp2`, and :func:`load_into_shards` fills the shards from rank 0's copy.
  It runs on CPU with gloo, which is how the tests prove sharded training.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import nn

DType = Literal["bf16", "fp16", "fp32"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
METADATA_FILE = "meta.pt"
"""The non-tensor part of a sharded Lightning checkpoint folder (Lightning's own file name)."""


# --- the model's structure --------------------------------------------------------------------
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


def empty_model(name: str, attn_implementation: str = "sdpa", trust_remote_code: bool = False) -> nn.Module:
    """The model of ``name`` (folder or hub name) on the meta device: shapes, no memory, no weights.

    The generation config comes from the folder when it has one, as ``from_pretrained`` does.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
            dtype=torch.float32,
        )
    with contextlib.suppress(OSError):  # no generation_config.json: keep the one derived from the config
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


# --- FSDP2 ------------------------------------------------------------------------------------
def shard_fsdp2(model: nn.Module, mesh, param_dtype: DType = "bf16", reduce_dtype: DType = "fp32") -> nn.Module:
    """``fully_shard`` each decoder layer, then the root (embeddings, final norm, LM head).

    Parameters stay fp32 in their shards; ``param_dtype`` is what the layers compute in (the
    all-gathered copy) and ``reduce_dtype`` what gradients are reduce-scattered in, averaged over
    the ranks of ``mesh``.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=DTYPES[param_dtype], reduce_dtype=DTYPES[reduce_dtype])
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def load_into_shards(model: nn.Module, name: str, device: torch.device, trust_remote_code: bool = False) -> None:
    """Give a sharded meta-device ``model`` the pretrained weights of ``name``.

    Rank 0 loads the weights once on CPU (``from_pretrained``, so every format and key renaming of
    transformers applies); each tensor is broadcast in turn and every rank keeps only its shard.
    Then the rotary buffers, which no state dict carries, are recomputed.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoModelForCausalLM

    model.to_empty(device=device)
    distributed = dist.is_available() and dist.is_initialized()
    full: dict[str, torch.Tensor] = {}
    if not distributed or dist.get_rank() == 0:
        pretrained = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code, use_safetensors=None)
        full = pretrained.state_dict()
    set_model_state_dict(
        model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed, strict=True)
    )
    reset_rotary_buffers(model, device)


class DecoderFSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all ranks (Lightning's ``ModelParallelStrategy``, data-parallel only).

    The sharding itself happens in ``XLlamaModule.configure_model``, which reads these settings.

    Args:
        param_dtype: dtype the layers compute in: ``bf16`` on GPUs, ``fp32`` on CPU.
        reduce_dtype: dtype gradients are reduced in (fp32 keeps the sum over ranks exact enough).
        activation_checkpointing: recompute each decoder layer's activations in the backward pass
            (Hugging Face's gradient checkpointing, which works per decoder layer).
        save_distributed_checkpoint: checkpoints as a folder of per-rank shards (``True``) or one
            file assembled on rank 0 (``False``); both resume on any number of ranks.
        process_group_backend: ``nccl`` or ``gloo``; by default the accelerator's.
        timeout: how long a collective waits for the other ranks.
    """

    def __init__(
        self,
        param_dtype: DType = "bf16",
        reduce_dtype: DType = "fp32",
        activation_checkpointing: bool = False,
        save_distributed_checkpoint: bool = True,
        process_group_backend: Optional[str] = None,
        timeout: Optional[timedelta] = default_pg_timeout,
    ):
        for label, value in (("param_dtype", param_dtype), ("reduce_dtype", reduce_dtype)):
            if value not in DTYPES:
                raise ValueError(f"{label} must be one of {sorted(DTYPES)}, got {value!r}")
        super().__init__(
            data_parallel_size="auto", tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend, timeout=timeout,
        )
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.activation_checkpointing = activation_checkpointing

    def setup_environment(self) -> None:
        # every rank holds a data shard: the mesh is (world size) x 1, on any number of nodes
        self._data_parallel_size, self._tensor_parallel_size = self.num_nodes * self.num_processes, 1
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path, weights_only: Optional[bool] = None) -> dict:
        check_checkpoint_shapes(checkpoint_path, parameter_shapes(self.lightning_module))
        return super().load_checkpoint(checkpoint_path, weights_only=weights_only)


# --- FSDP1 (Lightning's FSDPStrategy) ---------------------------------------------------------
class DecoderFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy at the decoder layer, as the paper trained: CUDA GPUs only.

    Args:
        state_dict_type: ``sharded`` (each rank writes its shard: fast, and a 7B optimizer state
            never sits whole in one process) or ``full`` (one file assembled on rank 0).
        activation_checkpointing: recompute each decoder layer's activations in the backward pass.
        param_dtype: dtype the layers compute in; gradients are reduced and buffers kept in fp32.
        cpu_offload: keep parameters and gradients on the CPU between uses (slow; for tight memory).
        process_group_backend: by default ``nccl``.
        timeout: how long a collective waits for the other ranks.
    """

    def __init__(
        self,
        state_dict_type: Literal["full", "sharded"] = "sharded",
        activation_checkpointing: bool = True,
        param_dtype: DType = "bf16",
        cpu_offload: bool = False,
        process_group_backend: Optional[str] = None,
        timeout: Optional[timedelta] = default_pg_timeout,
    ):
        from torch.distributed.fsdp import MixedPrecision

        if param_dtype not in DTYPES:
            raise ValueError(f"param_dtype must be one of {sorted(DTYPES)}, got {param_dtype!r}")
        super().__init__(
            process_group_backend=process_group_backend, timeout=timeout, cpu_offload=cpu_offload,
            mixed_precision=MixedPrecision(
                param_dtype=DTYPES[param_dtype], reduce_dtype=torch.float32, buffer_dtype=torch.float32
            ),
            sharding_strategy="FULL_SHARD", state_dict_type=state_dict_type,
            sync_module_states=True,  # rank 0 holds the pretrained weights; the others start on meta
        )
        self.activation_checkpointing = activation_checkpointing

    def _configure_launcher(self) -> None:
        # the Trainer calls this while it is built: the earliest point the accelerator is known
        if not isinstance(self.accelerator, CUDAAccelerator):
            raise ValueError(
                f"{type(self).__name__} (Lightning's FSDPStrategy) runs on CUDA GPUs only, but the "
                f"accelerator is {type(self.accelerator).__name__}. On CPU, or to use FSDP2, set "
                "--trainer.strategy.class_path=lightning_xllama.strategies.DecoderFSDP2Strategy "
                "(Lightning's ModelParallelStrategy)."
            )
        super()._configure_launcher()

    def set_policies(self, module: nn.Module) -> set[type[nn.Module]]:
        """Wrap (and checkpoint) at ``module``'s decoder layers; return their classes."""
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        layers = decoder_layer_classes(module)
        self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(layers)
        if self.activation_checkpointing:
            if any(getattr(m, "is_gradient_checkpointing", False) for m in module.modules()):
                raise ValueError(
                    "activation checkpointing is on twice: in the strategy (activation_checkpointing) and "
                    "in the model (gradient_checkpointing); turn one off"
                )
            self._activation_checkpointing_kwargs = {"auto_wrap_policy": ModuleWrapPolicy(layers)}
        if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
            # ranks other than 0 built the model on meta: give it memory, rank 0's weights follow
            self.kwargs["param_init_fn"] = lambda m: m.to_empty(device=self.root_device, recurse=False)
        return layers

    def _setup_model(self, model: nn.Module) -> nn.Module:
        self.set_policies(model)
        wrapped = super()._setup_model(model)
        reset_rotary_buffers(wrapped, self.root_device)
        return wrapped

    def load_checkpoint(self, checkpoint_path, weights_only: Optional[bool] = None) -> dict:
        check_checkpoint_shapes(checkpoint_path, parameter_shapes(self.lightning_module))
        return super().load_checkpoint(checkpoint_path, weights_only=weights_only)


# --- checkpoints ------------------------------------------------------------------------------
Shapes = Mapping[str, Sequence[int]]


def parameter_shapes(module) -> dict[str, tuple[int, ...]]:
    """The model's tensor shapes as a checkpoint's ``state_dict`` names them (``model.…``),
    recorded by ``XLlamaModule.configure_model`` before sharding flattens them."""
    shapes = getattr(module, "parameter_shapes", None)
    if not shapes:
        raise ValueError(f"{type(module).__name__} has no recorded parameter shapes: configure_model first")
    return shapes


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a Lightning checkpoint's ``state_dict``: a file, or a sharded folder
    (read from its metadata, without loading a tensor)."""
    path = Path(path)
    if path.is_dir():
        from torch.distributed.checkpoint import FileSystemReader

        metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
        prefix = "state_dict."
        return {k[len(prefix):]: tuple(v.size) for k, v in metadata.items() if k.startswith(prefix) and hasattr(v, "size")}
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)["state_dict"]
    return {k: tuple(v.shape) for k, v in state.items()}


def check_checkpoint_shapes(path: str | Path, expected: Shapes) -> None:
    """Fail, naming the tensors, when a checkpoint was written by a model of another shape."""
    compare_shapes(checkpoint_shapes(path), expected, f"checkpoint {path}")


def compare_shapes(found: Shapes, expected: Shapes, source: str) -> None:
    """Raise a ValueError that lists every tensor of ``source`` whose shape or presence differs."""
    found = {k: tuple(v) for k, v in found.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    differ = [f"{k}: checkpoint {found[k]}, model {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if differ or missing or unexpected:
        lines = differ + [f"{k}: missing from the checkpoint" for k in missing]
        lines += [f"{k}: in the checkpoint, not in the model" for k in unexpected]
        shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        raise ValueError(
            f"{source} does not fit the model: {len(differ)} tensor(s) differ in shape, {len(missing)} "
            f"missing, {len(unexpected)} unexpected. Was it written for another base model?\n  {shown}"
        )
