"""Sharding a Hugging Face decoder model: FSDPStrategy on GPUs, FSDP2 anywhere.

Both strategies shard at the model's decoder layer, found from the model itself: the classes its
``_no_split_modules`` names (``LlamaDecoderLayer`` for LLaMA, ``Qwen2DecoderLayer``,
``MistralDecoderLayer``... for other families), so a recipe never spells a class path.

- :class:`DecoderFSDPStrategy` is Lightning's ``FSDPStrategy`` (FSDP1, CUDA only): full shard and
  auto-wrap at the decoder layer, as the paper's runs; by default also activation checkpointing,
  bf16 compute with fp32 gradient reduction and fp32 buffers (LLaMA's rotary ``inv_freq`` loses
  precision in bf16), where the paper's run reduced gradients and kept buffers in bf16 without
  checkpointing (``reduce_dtype: bf16``, ``buffer_dtype: bf16``, ``activation_checkpointing:
  false``); full or sharded checkpoints. Only rank 0 loads the pretrained weights; the other
  ranks build the model on the meta device and FSDP broadcasts rank 0's weights as it wraps each
  layer (``sync_module_states``), so a node holds one CPU copy of the weights, not one per GPU.
- :class:`DecoderFSDP2Strategy` is Lightning's ``ModelParallelStrategy`` with every rank
  data-parallel (no tensor parallelism). Lightning leaves the sharding to
  ``LightningModule.configure_model``: ``XLlamaModule`` builds the model on the meta device,
  applies :func:`shard_fsdp2`, and :func:`load_into_shards` fills the shards from rank 0's copy.
  It runs on CPU with gloo, which is how the tests prove sharded training.

With LoRA (``XLlamaModule(lora_rank=...)``) the adapters are added before ``fully_shard``, so they
are sharded with their layers, and FSDP2 checkpoints hold only the trainable tensors (the adapters
and their optimizer state; :func:`load_trainable_shards` reads such a sharded folder back).

The modules: ``layers`` (the decoder layers of a model, meta-device builds, rotary buffers),
``fsdp`` (:class:`DecoderFSDPStrategy`), ``fsdp2`` (:class:`DecoderFSDP2Strategy`,
:func:`shard_fsdp2`), ``loading`` (:func:`load_into_shards`, :func:`load_trainable_shards`),
``checkpoint_shapes`` (a checkpoint's tensor shapes against the model's) and ``dtypes``.
"""

from lightning_xllama.training.strategies.checkpoint_shapes import (
    METADATA_FILE,
    Shapes,
    check_checkpoint_shapes,
    checkpoint_shapes,
    compare_shapes,
    parameter_shapes,
    read_checkpoint,
)
from lightning_xllama.training.strategies.dtypes import DTYPES, DType
from lightning_xllama.training.strategies.fsdp import DecoderFSDPStrategy
from lightning_xllama.training.strategies.fsdp2 import DecoderFSDP2Strategy, shard_fsdp2
from lightning_xllama.training.strategies.layers import (
    decoder_layer_classes,
    decoder_layers,
    empty_model,
    reset_rotary_buffers,
)
from lightning_xllama.training.strategies.loading import load_into_shards, load_trainable_shards

__all__ = [
    "DTYPES",
    "DType",
    "DecoderFSDP2Strategy",
    "DecoderFSDPStrategy",
    "METADATA_FILE",
    "Shapes",
    "check_checkpoint_shapes",
    "checkpoint_shapes",
    "compare_shapes",
    "decoder_layer_classes",
    "decoder_layers",
    "empty_model",
    "load_into_shards",
    "load_trainable_shards",
    "parameter_shapes",
    "read_checkpoint",
    "reset_rotary_buffers",
    "shard_fsdp2",
]
