"""``import-gguf``: a GGUF model becomes a Hugging Face folder with a repaired tokenizer, and that
folder trains, evaluates, exports and reloads like any other model folder.

The GGUF is written here with ``gguf.GGUFWriter`` from a tiny LLaMA, as llama.cpp's converter
writes one (q/k rows permuted, a SentencePiece-style vocabulary with byte fallback), with the
tokenizer quirk transformers shows on real files: BOS and EOS become the same token.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from sharded_utils import probe_logits
from training_utils import quiet_trainer, tiny_datamodule
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from lightning_xllama.callbacks import ResumableCheckpoint
from lightning_xllama.commands.main import main
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.training.module import XLlamaModule

gguf = pytest.importorskip("gguf")

PIECES = ["▁"] + list("abcdefghijklmnopqrstuvwxyz.,") + ["▁a", "▁t", "he", "▁the", "in", "er"]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """LLaMA-style tokens: UNK, BOS, EOS, 256 byte tokens, then word pieces (~300 in all)."""
    types = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + PIECES
    kinds = [types.UNKNOWN, types.CONTROL, types.CONTROL] + [types.BYTE] * 256
    kinds += [types.NORMAL] * len(PIECES)
    scores = [0.0] * 259 + [-float(i) for i in range(len(PIECES))]
    return tokens, scores, [int(k) for k in kinds]


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers undoes it when reading a LLaMA GGUF)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_gguf(path, layers: int = 2) -> LlamaForCausalLM:
    """A tiny LLaMA written as a GGUF file at ``path``; returns the model it holds."""
    tokens, scores, kinds = vocabulary()
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i in range(layers):
        for hf, short in parts.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{short}.weight"
    for name, tensor in model.state_dict().items():
        array = tensor.numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            array = permute(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = permute(array, config.num_key_value_heads)
        writer.add_tensor(names[name], array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The folder holding the tiny GGUF (``tiny.gguf``), and the model written into it."""
    root = tmp_path_factory.mktemp("gguf")
    source = write_tiny_gguf(root / "tiny.gguf")
    return root, source


def test_import_gguf_repairs_the_tokenizer_and_keeps_the_logits(imported, capsys):
    root, source = imported
    out = root / "hf"
    main(["import-gguf", "--file", str(root / "tiny.gguf"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "repaired eos_token: '<s>' -> '</s>'" in printed
    assert "repaired pad_token: None -> '<unk>'" in printed
    note = json.loads((out / "gguf_import.json").read_text())
    assert [r["what"] for r in note["repairs"]] == [
        "eos_token",
        "add_bos_token",
        "pad_token",
        "tokenizer.model",
    ]
    assert note["tokenizer"]["eos"] == {"token": "</s>", "id": 2}
    assert note["model_class"] == "LlamaForCausalLM"
    # the folder does not carry the GGUF as tokenizer.model; it is a plain model folder
    names = {p.name for p in out.iterdir()}
    assert "tokenizer.model" not in names
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    tokenizer = load_tokenizer(str(out))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<s>",
        "</s>",
        "<unk>",
    )
    assert tokenizer("the cat")["input_ids"][0] != tokenizer.bos_token_id  # as the GGUF says
    # the weights as transformers reads the GGUF, which are the model written into it
    model = AutoModelForCausalLM.from_pretrained(out)
    direct = AutoModelForCausalLM.from_pretrained(str(root), gguf_file="tiny.gguf")
    torch.testing.assert_close(probe_logits(model), probe_logits(direct))
    torch.testing.assert_close(probe_logits(model), probe_logits(source))


def test_an_imported_gguf_trains_evaluates_exports_and_reloads(imported, tiny_data, tmp_path):
    root, _ = imported
    folder = root / "hf"
    if not folder.exists():
        main(["import-gguf", "--file", str(root / "tiny.gguf"), "--out", str(folder)])
    module = XLlamaModule(str(folder), learning_rate=1e-3)
    trainer = quiet_trainer(
        max_steps=2,
        enable_checkpointing=True,
        callbacks=[ResumableCheckpoint(str(tmp_path / "checkpoints"))],
    )
    datamodule = tiny_datamodule(str(folder), tiny_data, cache_dir=str(tmp_path / "cache"))
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2
    exported = tmp_path / "exported"
    main(["export", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--out", str(exported)])
    assert "tokenizer.model" not in {p.name for p in exported.iterdir()}
    reloaded = AutoModelForCausalLM.from_pretrained(exported)
    torch.testing.assert_close(probe_logits(reloaded), probe_logits(module.model))
    assert load_tokenizer(str(exported)).eos_token == "</s>"
    config = {
        "model": str(exported),
        "output_dir": str(tmp_path / "report"),
        "evaluations": [
            {
                "class_path": "TranslationEvaluation",
                "init_args": {
                    "directions": ["en-syn_far"],
                    "test_prefix": str(DataLayout(tiny_data).translation_test("syn_far")),
                    "max_samples": 2,
                    "batch_size": 2,
                    "max_new_tokens": 8,
                    "off_target": False,
                    "stop_at_newline": True,
                    "repeat_ngram": 2,
                    "repeat_times": 3,
                },
            }
        ],
    }
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(config))
    main(["evaluate", "--config", str(tmp_path / "evaluate.yaml")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    metrics = report["metrics"]
    assert "translation/en-syn_far/chrf_pp" in metrics
    ended = sum(
        metrics[f"translation/en-syn_far/{rule}"]
        for rule in ("stopped_newline", "stopped_repeating", "hit_limit")
    )
    assert ended <= 2
