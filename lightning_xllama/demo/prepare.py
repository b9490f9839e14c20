"""What a real user brings, built offline: corpora, a tokenizer and an English-centred base model.

``python -m lightning_xllama prepare-demo`` writes the synthetic world's corpora, trains a
SentencePiece tokenizer with byte fallback on them (as LLaMA's), and pretrains a small
LLaMA-architecture model on mostly-English text, so that it plays the part of LLaMA-7B. The
model is saved as a Hugging Face folder and from then on only loaded with ``from_pretrained``.
A second call with the same settings reuses what is there.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch

from lightning_xllama.demo.layout import DemoLayout
from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import (
    ALPACA_NO_INPUT,
    ALPACA_WITH_INPUT,
    TRANSLATION_INSTRUCTIONS,
)
from lightning_xllama.runtime.progress import progress

log = logging.getLogger(__name__)


def train_tokenizer(texts: list[str], out_dir: str | Path, vocab_size: int = 1024):
    """A LLaMA-style tokenizer: SentencePiece BPE with byte fallback, saved as a HF folder."""
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    spm_path = out / "tokenizer.model"
    spm_path.write_bytes(model.getvalue())
    tokenizer = LlamaTokenizerFast(
        vocab_file=str(spm_path), legacy=False, from_slow=True, add_prefix_space=True
    )
    tokenizer.save_pretrained(out)
    return tokenizer


def tokenizer_corpus(world: SyntheticWorld, paths: dict[str, str]) -> list[str]:
    """Text the tokenizer is trained on: the corpora plus the prompt wording, as LLaMA's
    tokenizer would have seen ordinary English."""
    texts = Path(paths["pretraining"]).read_text(encoding="utf-8").splitlines()
    for key, path in paths.items():
        if key.startswith("instructions/"):
            for record in json.loads(Path(path).read_text(encoding="utf-8")):
                texts += [record["instruction"], record["input"], record["output"]]
    names = [get_language(code).name for code in ["en", *world.targets]]
    prompt_words = [ALPACA_WITH_INPUT, ALPACA_NO_INPUT] + [
        t.format(src=a, tgt=b)
        for t in TRANSLATION_INSTRUCTIONS
        for a in names
        for b in names
        if a != b
    ]
    return texts + [line for text in prompt_words for line in text.splitlines() if line] * 200


def pretrain_base_model(
    tokenizer,
    lines: list[str],
    out_dir: str | Path,
    hidden_size: int = 192,
    num_layers: int = 4,
    num_heads: int = 8,
    steps: int = 300,
    batch_size: int = 16,
    block_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
):
    """Pretrain a small LLaMA on ``lines`` (next-token prediction on packed blocks) and save it
    next to its tokenizer in ``out_dir``."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 8 // 3 // 16 * 16,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    stream: list[int] = []
    for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]:
        stream += [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    blocks = torch.tensor(stream[: len(stream) // block_size * block_size]).view(-1, block_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    bar = progress(range(steps), desc="pretraining the base model", unit="step")
    for _ in bar:
        batch = blocks[torch.randint(len(blocks), (batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    model.save_pretrained(
        out_dir, safe_serialization=True
    )  # the tokenizer is already there, as LLaMA ships it
    return model, loss.item()


def prepare_demo(
    output_dir: str = "artifacts/demo",
    targets: Optional[list[str]] = None,
    seed: int = 0,
    pretraining: int = 20000,
    bilingual_share: float = 0.05,
    instructions: int = 2000,
    parallel: int = 4000,
    vocab_size: int = 2048,
    hidden_size: int = 192,
    num_layers: int = 4,
    num_heads: int = 8,
    pretrain_steps: int = 200,
    pretrain_learning_rate: float = 1e-3,
    force: bool = False,
) -> dict:
    """Build the offline stand-ins for a user's corpora and LLaMA weights (cached).

    Args:
        output_dir: where ``data/`` (corpora) and ``base_model/`` (HF folder) are written.
        targets: synthetic target languages (default: syn_near and syn_far).
        seed: seed of the corpora and the pretraining.
        pretraining: pretraining lines (10% in each target language, the rest English).
        bilingual_share: share of pretraining lines pairing an English sentence with its
            translation: the latent cross-lingual knowledge an English-centred LLM has.
        instructions: Alpaca records per language.
        parallel: parallel sentence pairs per target language.
        vocab_size: SentencePiece vocabulary size.
        hidden_size: base model width.
        num_layers: base model depth.
        num_heads: attention heads per layer. Translating word by word needs heads that find
            the aligned source word; at this width 8 narrow heads learn that within the demo's
            budget where 4 wider ones do not.
        pretrain_steps: optimizer steps of base-model pretraining.
        pretrain_learning_rate: peak learning rate of the pretraining. At 3e-3 the loss ends
            as low but instruction tuning then learns translation about half as fast.
        force: rebuild even when a matching build exists.
    """
    settings = dict(locals())
    settings.pop("force")
    settings["targets"] = targets = list(targets or ["syn_near", "syn_far"])
    layout = DemoLayout(output_dir)
    out, stamp = layout.root, layout.stamp
    if not force and stamp.is_file() and json.loads(stamp.read_text())["settings"] == settings:
        print(f"demo assets in {out} are up to date (delete {stamp} or pass --force to rebuild)")
        return json.loads(stamp.read_text())
    start = time.perf_counter()
    world = SyntheticWorld(targets, seed=seed)
    paths = world.write(
        layout.data.root,
        pretraining=pretraining,
        bilingual_share=bilingual_share,
        instructions=instructions,
        parallel=parallel,
    )
    tokenizer = train_tokenizer(tokenizer_corpus(world, paths), layout.base_model, vocab_size)
    from lightning_xllama.runtime.hf_loading import load_tokenizer

    tokenizer = load_tokenizer(str(layout.base_model))
    lines = Path(paths["pretraining"]).read_text(encoding="utf-8").splitlines()
    _, loss = pretrain_base_model(
        tokenizer,
        lines,
        layout.base_model,
        hidden_size,
        num_layers,
        num_heads,
        steps=pretrain_steps,
        learning_rate=pretrain_learning_rate,
        seed=seed,
    )
    result = {
        "settings": settings,
        "paths": {**paths, "base_model": str(layout.base_model)},
        "pretrain_final_loss": loss,
        "seconds": round(time.perf_counter() - start, 1),
    }
    stamp.write_text(json.dumps(result, indent=1))
    print(
        f"demo assets written to {out} in {result['seconds']} s (base model final loss {loss:.3f})"
    )
    return result
