"""Every model family users bring (LLaMA-2, LLaMA-3.1, Mistral, Qwen2, Gemma, Gemma-2) trains,
evaluates, exports and reloads through ``from_pretrained``; sharding finds its decoder layer and
its meta-device build (rotary variants included) gives the logits of ``from_pretrained``."""

from __future__ import annotations

import warnings

import pytest
import torch
from families import FAMILIES
from sharded_utils import probe_logits
from training_utils import quiet_trainer, tiny_datamodule
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lightning_xllama.callbacks import ResumableCheckpoint, TranslationEvaluation
from lightning_xllama.commands.main import main
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import (
    decoder_layer_classes,
    empty_model,
    load_into_shards,
    reset_rotary_buffers,
    shard_fsdp2,
)

ARCHITECTURES = {
    "llama2": "Llama",
    "llama3": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "gemma": "Gemma",
    "gemma2": "Gemma2",
}
TRAINING = {
    "llama2": ({}, {}),
    "llama3": ({}, {"template": "chat"}),
    "mistral": ({"attn_implementation": "sdpa_varlen"}, {"batching": "pack", "pack_length": 512}),
    "qwen2": ({}, {"template": "chat"}),
    "gemma": ({}, {}),
    "gemma2": ({"attn_implementation": "eager"}, {"batching": "pack", "pack_length": 512}),
}
"""Per family: ``XLlamaModule`` and DataModule settings, so that between them the families
cover the chat template and packed rows under the sliding-window and soft-capped attention."""
CONFIG_KEYS = (
    "num_key_value_heads",
    "rope_scaling",
    "sliding_window",
    "layer_types",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "tie_word_embeddings",
)
"""Config entries that make each family what it is: the export keeps them."""


def tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_evaluates_exports_and_reloads(family, family_models, tiny_data, tmp_path):
    folder = family_models[family]
    module_settings, data_settings = TRAINING[family]
    module = XLlamaModule(folder, learning_rate=1e-2, **module_settings)
    translation = TranslationEvaluation(
        ["en-syn_far"],
        str(DataLayout(tiny_data).translation_test("syn_far")),
        max_samples=2,
        max_new_tokens=4,
        before_training=False,
        write_samples=False,
    )
    trainer = quiet_trainer(
        max_steps=2,
        limit_val_batches=1,
        val_check_interval=2,
        enable_checkpointing=True,
        callbacks=[ResumableCheckpoint(str(tmp_path / "checkpoints")), translation],
    )
    datamodule = tiny_datamodule(
        folder, tiny_data, cache_dir=str(tmp_path / "cache"), **data_settings
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])
    assert "val/translation/en-syn_far/chrf_pp" in metrics  # generated and scored

    out = tmp_path / "hf"
    main(["export", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--out", str(out)])
    # as trained: Gemma-2's attention soft-capping is eager's, which transformers' sdpa drops
    attention = module.model.config._attn_implementation
    exported = AutoModelForCausalLM.from_pretrained(out, attn_implementation=attention)
    base = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention)
    assert type(exported).__name__ == f"{ARCHITECTURES[family]}ForCausalLM"
    trained_logits = probe_logits(module.model)
    torch.testing.assert_close(probe_logits(exported), trained_logits)
    assert not torch.allclose(probe_logits(base), trained_logits, atol=1e-3)  # it trained
    assert tied(exported) == tied(module.model) == base.config.tie_word_embeddings
    config, base_config = AutoConfig.from_pretrained(out).to_dict(), base.config.to_dict()
    for key in CONFIG_KEYS:
        assert config.get(key) == base_config.get(key), key
    tokenizer, base_tokenizer = AutoTokenizer.from_pretrained(out), load_tokenizer(folder)
    text = "Translate: the king holds the cup. 中文"
    assert tokenizer(text)["input_ids"] == base_tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == base_tokenizer.chat_template
    assert load_tokenizer(str(out)).pad_token == base_tokenizer.pad_token


@pytest.mark.parametrize("family", FAMILIES)
def test_family_lora_trains_and_exports_the_merged_model_and_the_adapter(
    family, family_models, tiny_data, tmp_path
):
    """LoRA on each architecture: adapters on its decoder layers' projections (GQA, biases,
    soft-capping, tied embeddings untouched), the merged export and the adapter folder both give
    the trained model's logits."""
    from peft import PeftModel

    folder = family_models[family]
    module_settings, data_settings = TRAINING[family]
    module = XLlamaModule(
        folder, learning_rate=1e-2, lora_rank=4, lora_alpha=8.0, lora_dropout=0.0, **module_settings
    )
    trainer = quiet_trainer(
        max_steps=2,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[ResumableCheckpoint(str(tmp_path / "checkpoints"))],
    )
    datamodule = tiny_datamodule(
        folder, tiny_data, cache_dir=str(tmp_path / "cache"), **data_settings
    )
    trainer.fit(module, datamodule=datamodule)
    trainable, total = module.parameter_counts
    assert 0 < trainable < total / 4
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    main(["export", "--ckpt", ckpt, "--out", str(tmp_path / "merged")])
    main(["export", "--ckpt", ckpt, "--out", str(tmp_path / "adapter"), "--lora_output", "adapter"])

    attention = module.model.config._attn_implementation
    trained = probe_logits(module.model.eval())
    base = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention)
    assert not torch.allclose(probe_logits(base), trained, atol=1e-4)  # the adapters trained
    merged = AutoModelForCausalLM.from_pretrained(
        tmp_path / "merged", attn_implementation=attention
    )
    torch.testing.assert_close(probe_logits(merged), trained, rtol=1e-4, atol=1e-4)
    assert tied(merged) == base.config.tie_word_embeddings
    adapter = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(probe_logits(adapter), trained)


@pytest.fixture(scope="module")
def one_rank_mesh(tmp_path_factory):
    """A one-rank gloo process group in this process and its device mesh, as FSDP2 needs."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    store = tmp_path_factory.mktemp("one_rank") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("family", FAMILIES)
def test_sharded_meta_device_build_finds_the_layers_and_gives_the_logits_of_from_pretrained(
    family, family_models, one_rank_mesh
):
    """What FSDP2 does on each rank (meta device, ``fully_shard`` per decoder layer, then the
    weights and the rotary buffers), on one rank: LLaMA-3's scaled rotary frequencies and the
    tied embeddings of Qwen2 and Gemma survive it."""
    folder = family_models[family]
    reference = AutoModelForCausalLM.from_pretrained(folder)
    layer = type(reference.model.layers[0])
    assert layer.__name__ == f"{ARCHITECTURES[family]}DecoderLayer"
    assert decoder_layer_classes(reference) == {layer}

    model = empty_model(folder)
    assert decoder_layer_classes(model) == {layer}
    shard_fsdp2(model, one_rank_mesh, "fp32", "fp32")
    load_into_shards(model, folder, torch.device("cpu"))
    assert tied(model) == reference.config.tie_word_embeddings
    torch.testing.assert_close(probe_logits(model.eval()), probe_logits(reference), rtol=0, atol=0)
    rotary = model.model.rotary_emb
    torch.testing.assert_close(rotary.inv_freq, reference.model.rotary_emb.inv_freq)
    if family == "llama3":  # the llama3 scaling changed the frequencies the model uses
        plain = AutoConfig.from_pretrained(folder)
        plain.rope_scaling = None
        unscaled = type(rotary)(plain).inv_freq
        assert not torch.allclose(rotary.inv_freq, unscaled)
        rotary.inv_freq = unscaled
        assert not torch.allclose(probe_logits(model), probe_logits(reference))
        assert reset_rotary_buffers(model, torch.device("cpu")) == 1
        torch.testing.assert_close(probe_logits(model), probe_logits(reference), rtol=0, atol=0)


@pytest.mark.distributed
def test_qwen2_trains_on_two_fsdp2_ranks_and_exports_with_tied_embeddings(
    family_models, tiny_data, tmp_path
):
    """Tied embeddings stay one tensor through sharding, sharded training and the export of
    a sharded checkpoint."""
    from sharded_utils import checkpoint_at, launch, read_losses

    folder, out = family_models["qwen2"], tmp_path / "run"
    result = launch(
        "fsdp2_run.py", folder, str(tiny_data), str(out), "--steps", "2", "--accumulate", "1"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(read_losses(out)) == [1, 2]
    base = AutoModelForCausalLM.from_pretrained(folder)
    start = torch.load(out / "logits_start.pt", weights_only=True)
    torch.testing.assert_close(start, probe_logits(base))
    hf = tmp_path / "hf"
    main(["export", "--ckpt", str(checkpoint_at(out, 2)), "--out", str(hf), "--dtype", "fp32"])
    exported = AutoModelForCausalLM.from_pretrained(hf)
    assert tied(exported)
    end = torch.load(out / "logits_end.pt", weights_only=True)
    torch.testing.assert_close(probe_logits(exported), end)
    assert not torch.allclose(end, start, atol=1e-3)


@pytest.mark.parametrize("attention, warned", [("sdpa", True), ("sdpa_varlen", False)])
def test_training_gemma2_with_sdpa_warns_that_its_soft_capping_is_dropped(
    family_models, attention, warned
):
    from lightning_xllama.training.attention import register_attention
    from lightning_xllama.training.building import ModelSettings, build_model

    register_attention()
    settings = ModelSettings(family_models["gemma2"], attn_implementation=attention)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(settings)
    messages = [str(w.message) for w in caught if "attn_logit_softcapping" in str(w.message)]
    assert bool(messages) == warned, messages
    if warned:
        assert "'sdpa_varlen' or 'eager'" in messages[0]
