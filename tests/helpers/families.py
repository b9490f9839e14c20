"""Tiny offline stand-ins for the model families users bring: each a Hugging Face folder (config,
safetensors weights, generation config, tokenizer) of the real architecture class, with a
tokenizer of the same kind as the family's, trained on the demo's corpus.

- ``llama2``: LLaMA-2, SentencePiece BPE with byte fallback (the demo's tokenizer), multi-head.
- ``llama3``: LLaMA-3.1 base, byte-level BPE from ``tokenizer.json`` with no ``<unk>`` and no
  pad, ``<|reserved_special_token_N|>`` tokens, grouped-query attention, ``llama3`` rope scaling
  and its chat template (which writes the BOS itself and closes turns with ``<|eot_id|>``, while
  the EOS is ``<|end_of_text|>``).
- ``mistral``: Mistral, the SentencePiece tokenizer, grouped-query attention and a sliding
  window (:data:`WINDOW`) shorter than a packed row.
- ``qwen2``: Qwen2.5, byte-level BPE with no BOS, ``<|endoftext|>`` as its pad, a ChatML chat
  template, attention biases and tied embeddings.
- ``gemma``: Gemma, SentencePiece with Gemma's special ids (pad 0, eos 1, bos 2, unk 3; BOS
  added), multi-query attention, tied embeddings.
- ``gemma2``: Gemma-2, Gemma's tokenizer, tied embeddings, sliding window on every other layer,
  attention and final-logit soft-capping (small caps, so that at these widths they change the
  numbers and a path that skips them is caught).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch

FAMILIES = ("llama2", "llama3", "mistral", "qwen2", "gemma", "gemma2")
WINDOW = 12
"""Sliding window of the tiny Mistral and Gemma-2: shorter than every demo example."""
VOCAB = 700
"""Vocabulary of the tokenizers trained here (the demo's own has 900 pieces)."""
SIZES = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=512,
)
"""Tiny sizes every family shares."""

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
LLAMA3_CHAT = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""LLaMA-3's chat template, shortened (no system-prompt defaults); it writes the BOS."""
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_CHAT = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2's ChatML template, shortened (no default system turn); no BOS."""


def corpus(data: Path) -> list[str]:
    """Lines the tokenizers learn from: the demo's pretraining text, its instructions and the
    Alpaca prompt wording."""
    from lightning_xllama.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT

    lines = (data / "pretraining.txt").read_text(encoding="utf-8").splitlines()
    for path in sorted((data / "instructions").glob("*.json")):
        for record in json.loads(path.read_text(encoding="utf-8")):
            lines += [record["instruction"], record["input"], record["output"]]
    prompt_lines = [line for t in (ALPACA_WITH_INPUT, ALPACA_NO_INPUT) for line in t.splitlines()]
    return [line for line in lines if line] + [line for line in prompt_lines if line] * 50


def byte_level_tokenizer(lines: list[str], out: Path, specials: list[str], **tokens):
    """A byte-level BPE (LLaMA-3's and Qwen2's kind) trained with ``tokenizers``, saved as a
    ``tokenizer.json`` folder. ``tokens``: the special-token roles (``bos_token``, ...) and
    ``chat_template``; with a BOS, the post-processor adds it, as LLaMA-3's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    bos = tokens.get("bos_token")
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)
    tokenizer.save_pretrained(out)
    return tokenizer


def gemma_tokenizer(lines: list[str], out: Path):
    """Gemma's kind: SentencePiece BPE with byte fallback and Gemma's special ids (pad 0, eos 1,
    bos 2, unk 3), converted to ``GemmaTokenizerFast``, which adds the BOS."""
    import sentencepiece as spm
    from transformers import GemmaTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=VOCAB,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = GemmaTokenizerFast(vocab_file=str(out / "tokenizer.model"), from_slow=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def family_config(family: str, tokenizer):
    """The tiny config of ``family``, its special ids taken from ``tokenizer``."""
    from transformers import (
        Gemma2Config,
        GemmaConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if family == "llama2":
        return LlamaConfig(**SIZES, **ids, num_key_value_heads=4, tie_word_embeddings=False)
    if family == "llama3":
        scaling = dict(
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        )
        return LlamaConfig(
            **SIZES,
            **ids,
            num_key_value_heads=2,
            rope_theta=500000.0,
            rope_scaling=scaling,
            tie_word_embeddings=False,
        )
    if family == "mistral":
        return MistralConfig(**SIZES, **ids, num_key_value_heads=2, sliding_window=WINDOW)
    if family == "qwen2":
        return Qwen2Config(
            **SIZES,
            **{**ids, "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>")},
            num_key_value_heads=2,
            tie_word_embeddings=True,
            use_sliding_window=False,
        )
    if family == "gemma":
        return GemmaConfig(**SIZES, **ids, head_dim=8, num_key_value_heads=1)
    if family == "gemma2":
        return Gemma2Config(
            **SIZES,
            **ids,
            head_dim=8,
            num_key_value_heads=2,
            sliding_window=WINDOW,
            query_pre_attn_scalar=8,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
            initializer_range=0.2,
        )
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def family_tokenizer(family: str, demo_model: Path, lines: list[str], out: Path):
    """The tokenizer of ``family`` saved in ``out``: the demo's SentencePiece one for LLaMA-2
    and Mistral, a trained one otherwise."""
    if family in ("llama2", "mistral"):
        from transformers import AutoTokenizer

        out.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(demo_model / name, out / name)
        shutil.copy(demo_model / "special_tokens_map.json", out / "special_tokens_map.json")
        return AutoTokenizer.from_pretrained(out)
    if family == "llama3":
        return byte_level_tokenizer(
            lines,
            out,
            LLAMA3_SPECIALS,
            bos_token="<|begin_of_text|>",
            eos_token="<|end_of_text|>",
            chat_template=LLAMA3_CHAT,
        )
    if family == "qwen2":
        return byte_level_tokenizer(
            lines,
            out,
            QWEN2_SPECIALS,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=QWEN2_CHAT,
        )
    return gemma_tokenizer(lines, out)


def build_family(family: str, demo_model: Path, data: Path, out: Path, seed: int = 0) -> Path:
    """The Hugging Face folder of ``family`` in ``out`` (weights randomly initialised with
    ``seed``); ``demo_model`` is the demo's base model folder (its tokenizer), ``data`` its
    corpora."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = family_tokenizer(family, demo_model, corpus(data), out)
    config = family_config(family, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    return out
