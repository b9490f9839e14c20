"""Sharding set-up: what FSDPStrategy is built with (no GPU here), meta-device loading, bad input."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from sharded_utils import probe_logits, sharded_run
from torch.distributed.fsdp import MixedPrecision, ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import (
    DecoderFSDP2Strategy,
    DecoderFSDPStrategy,
    decoder_layer_classes,
    empty_model,
    load_into_shards,
)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tiny_model, tiny_data):
    return sharded_run(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)


def test_decoder_layer_is_found_from_the_model():
    with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
        qwen = Qwen2ForCausalLM(
            Qwen2Config(
                vocab_size=64,
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=2,
            )
        )
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2))
    assert {c.__name__ for c in decoder_layer_classes(qwen)} == {"Qwen2DecoderLayer"}
    assert {c.__name__ for c in decoder_layer_classes(gpt2)} == {"GPT2Block"}
    with pytest.raises(ValueError, match="cannot find the decoder layers of Linear"):
        decoder_layer_classes(torch.nn.Linear(2, 2))


def test_fsdp_strategy_wraps_checkpoints_and_casts_at_the_decoder_layer(tiny_model):
    strategy = DecoderFSDPStrategy()
    module = XLlamaModule(tiny_model)
    module.configure_model()
    assert strategy.set_policies(module) == {LlamaDecoderLayer}
    wrap = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(wrap, ModuleWrapPolicy) and wrap._module_classes == {LlamaDecoderLayer}
    checkpointing = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert isinstance(checkpointing, ModuleWrapPolicy) and checkpointing._module_classes == {
        LlamaDecoderLayer
    }
    assert strategy.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert strategy.mixed_precision_config == MixedPrecision(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.float32
    )
    assert (
        strategy._state_dict_type == "sharded"
        and DecoderFSDPStrategy(state_dict_type="full")._state_dict_type == "full"
    )
    assert strategy.kwargs["use_orig_params"] and strategy.kwargs["sync_module_states"]
    assert "param_init_fn" not in strategy.kwargs  # rank 0: the weights are real

    # another rank: the model on the meta device, given memory by FSDP and rank 0's weights
    meta_module = XLlamaModule(tiny_model)
    meta_module.model = empty_model(tiny_model)
    strategy.set_policies(meta_module)
    assert callable(strategy.kwargs["param_init_fn"])

    no_checkpointing = DecoderFSDPStrategy(activation_checkpointing=False)
    no_checkpointing.set_policies(module)
    assert no_checkpointing._activation_checkpointing_kwargs == {}


def test_checkpointing_twice_is_refused(tiny_model):
    module = XLlamaModule(tiny_model, gradient_checkpointing=True)
    module.configure_model()
    with pytest.raises(ValueError, match="activation checkpointing is on twice"):
        DecoderFSDPStrategy().set_policies(module)


def test_fsdp_strategy_on_cpu_fails_at_once_naming_the_alternative():
    with pytest.raises(
        ValueError, match="CUDA GPUs only.*DecoderFSDP2Strategy.*ModelParallelStrategy"
    ):
        L.Trainer(accelerator="cpu", devices=1, strategy=DecoderFSDPStrategy(), logger=False)
    with pytest.raises(ValueError, match="param_dtype must be one of"):
        DecoderFSDP2Strategy(param_dtype="bfloat")


def test_meta_device_init_gives_the_logits_of_an_ordinary_load(tiny_model, sharded):
    expected = probe_logits(AutoModelForCausalLM.from_pretrained(tiny_model))
    model = empty_model(tiny_model)
    assert all(p.is_meta for p in model.parameters())
    load_into_shards(model, tiny_model, torch.device("cpu"))
    torch.testing.assert_close(probe_logits(model), expected)
    # 2 ranks: built on meta, sharded per layer, each rank given its shards of rank 0's weights
    torch.testing.assert_close(torch.load(sharded / "logits_start.pt", weights_only=True), expected)

    # the test can tell: without recomputing it, the rotary buffer holds whatever memory it got
    stale = empty_model(tiny_model).to_empty(device="cpu")
    stale.load_state_dict(AutoModelForCausalLM.from_pretrained(tiny_model).state_dict())
    stale.model.rotary_emb.inv_freq.fill_(0.5)  # stand-in for uninitialised memory
    assert not torch.allclose(probe_logits(stale), expected)
