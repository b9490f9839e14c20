"""FSDP2 over every rank: Lightning's ``ModelParallelStrategy``, data-parallel only, and the
sharding ``XLlamaModule.configure_model`` applies under it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional

from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

from lightning_xllama.training.strategies.checkpoint_shapes import (
    check_checkpoint_shapes,
    parameter_shapes,
)
from lightning_xllama.training.strategies.dtypes import DTYPES, DType
from lightning_xllama.training.strategies.layers import decoder_layers
from lightning_xllama.training.strategies.loading import load_trainable_shards


def shard_fsdp2(
    model: nn.Module, mesh, param_dtype: DType = "bf16", reduce_dtype: DType = "fp32"
) -> nn.Module:
    """``fully_shard`` each decoder layer, then the root (embeddings, final norm, LM head).

    Parameters stay fp32 in their shards; ``param_dtype`` is what the layers compute in (the
    all-gathered copy) and ``reduce_dtype`` what gradients are reduce-scattered in, averaged over
    the ranks of ``mesh``.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(
        param_dtype=DTYPES[param_dtype], reduce_dtype=DTYPES[reduce_dtype]
    )
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


class DecoderFSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all ranks (Lightning's ``ModelParallelStrategy``, data-parallel only).

    The sharding itself happens in ``XLlamaModule.configure_model``, which reads these settings.

    Args:
        param_dtype: dtype the layers compute in: ``bf16`` on GPUs, ``fp32`` on CPU.
        reduce_dtype: dtype gradients are reduced in (fp32 keeps the sum over ranks exact enough;
            the paper's run, FSDP1 through the Hugging Face ``Trainer``: ``bf16``).
        activation_checkpointing: recompute each decoder layer's activations in the backward pass
            (Hugging Face's gradient checkpointing, which works per decoder layer).
        save_distributed_checkpoint: checkpoints as a folder of per-rank shards (``True``) or one
            file assembled on rank 0 (``False``); both resume on any number of ranks. Either holds
            the trainable parameters only: with LoRA, the adapters (gathered whole for a file).
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
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.activation_checkpointing = activation_checkpointing

    def setup_environment(self) -> None:
        # every rank holds a data shard: the mesh is (world size) x 1, on any number of nodes
        self._data_parallel_size, self._tensor_parallel_size = (
            self.num_nodes * self.num_processes,
            1,
        )
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict:
        """Lightning's, without frozen parameters: LoRA's base weights are neither gathered nor
        written (in full tuning nothing is frozen and nothing is left out)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(
            full_state_dict=not self._save_distributed_checkpoint,
            cpu_offload=True,
            ignore_frozen_params=True,
        )
        return get_model_state_dict(self.model, options=options)

    def load_checkpoint(self, checkpoint_path, weights_only: Optional[bool] = None) -> dict:
        module = self.lightning_module
        check_checkpoint_shapes(checkpoint_path, parameter_shapes(module))
        path = Path(self.broadcast(checkpoint_path))
        if module.strict_loading or not path.is_dir():  # a file loads partially in Lightning's
            return super().load_checkpoint(path, weights_only=weights_only)
        return load_trainable_shards(self.model, self.optimizers, path, weights_only)
