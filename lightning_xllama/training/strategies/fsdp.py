"""FSDP1 at the decoder layer (Lightning's ``FSDPStrategy``), sharded as the paper's runs: CUDA
GPUs only."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Optional

from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from lightning_xllama.training.strategies.checkpoint_shapes import (
    check_checkpoint_shapes,
    parameter_shapes,
)
from lightning_xllama.training.strategies.dtypes import DTYPES, DType
from lightning_xllama.training.strategies.layers import decoder_layer_classes, reset_rotary_buffers


class DecoderFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy at the decoder layer (full shard, as the paper's runs): CUDA only.

    The defaults differ from the paper's run (the Hugging Face ``Trainer`` with ``--fsdp
    "full_shard auto_wrap" --bf16``: bf16 parameters, gradient reduction and buffers, no
    activation checkpointing) for accuracy and memory: gradients are averaged over the ranks in
    fp32 (bf16 keeps 8 significant bits of each gradient and of their sum), buffers stay fp32
    (LLaMA's rotary ``inv_freq`` loses precision in bf16) and activations are recomputed (less
    memory for some extra compute). The paper's run: ``reduce_dtype: bf16``, ``buffer_dtype:
    bf16``, ``activation_checkpointing: false``.

    Args:
        state_dict_type: ``sharded`` (each rank writes its shard: fast, and a 7B optimizer state
            never sits whole in one process) or ``full`` (one file assembled on rank 0).
        activation_checkpointing: recompute each decoder layer's activations in the backward pass
            (the paper's run: off).
        param_dtype: dtype the layers compute in.
        reduce_dtype: dtype gradients are averaged over the ranks in (the paper's run: ``bf16``).
        buffer_dtype: dtype of the model's buffers, such as the rotary ``inv_freq`` (the paper's
            run: ``bf16``).
        cpu_offload: keep parameters and gradients on the CPU between uses (slow; for tight memory).
        process_group_backend: by default ``nccl``.
        timeout: how long a collective waits for the other ranks.
    """

    def __init__(
        self,
        state_dict_type: Literal["full", "sharded"] = "sharded",
        activation_checkpointing: bool = True,
        param_dtype: DType = "bf16",
        reduce_dtype: DType = "fp32",
        buffer_dtype: DType = "fp32",
        cpu_offload: bool = False,
        process_group_backend: Optional[str] = None,
        timeout: Optional[timedelta] = default_pg_timeout,
    ):
        from torch.distributed.fsdp import MixedPrecision

        dtypes = {
            "param_dtype": param_dtype,
            "reduce_dtype": reduce_dtype,
            "buffer_dtype": buffer_dtype,
        }
        for label, value in dtypes.items():
            if value not in DTYPES:
                raise ValueError(
                    f"{type(self).__name__}: {label} must be one of {sorted(DTYPES)}, got {value!r}"
                )
        super().__init__(
            process_group_backend=process_group_backend,
            timeout=timeout,
            cpu_offload=cpu_offload,
            mixed_precision=MixedPrecision(**{k: DTYPES[v] for k, v in dtypes.items()}),
            sharding_strategy="FULL_SHARD",
            state_dict_type=state_dict_type,
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
            self.kwargs["param_init_fn"] = lambda m: m.to_empty(
                device=self.root_device, recurse=False
            )
        return layers

    def _setup_model(self, model: nn.Module) -> nn.Module:
        self.set_policies(model)
        wrapped = super()._setup_model(model)
        reset_rotary_buffers(wrapped, self.root_device)
        return wrapped

    def load_checkpoint(self, checkpoint_path, weights_only: Optional[bool] = None) -> dict:
        check_checkpoint_shapes(checkpoint_path, parameter_shapes(self.lightning_module))
        return super().load_checkpoint(checkpoint_path, weights_only=weights_only)
