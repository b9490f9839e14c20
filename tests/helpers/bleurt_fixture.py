"""A tiny BLEURT checkpoint built offline, for tests that go through bleurt-pytorch's real code path.

It has the layout of the converted BLEURT-20 (``lucadiliello/BLEURT-20``)::

    folder/
      config.json               # model_type "bleurt", with an embedding projection like BLEURT-20
      model.safetensors         # BleurtForSequenceClassification weights
      spm.model                 # SentencePiece model with [PAD] [UNK] [CLS] [SEP] [MASK]
      tokenizer_config.json, special_tokens_map.json

Weights are random (seeded) and drawn wider than the default initialisation, so that different
inputs get visibly different scores: the scores mean nothing, but every step of loading and
scoring runs, and the order of segments can be checked.
"""

from __future__ import annotations

from pathlib import Path

import torch

_SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Machine translation turns text in one language into another.",
    "Die Katze sitzt auf der Matte.",
    "El gato se sentó en la alfombra.",
    "猫坐在垫子上。",
    "The weather is nice today and the sun is shining.",
    "Language models learn from large amounts of text.",
]


def build_tiny_bleurt(folder: str | Path, seed: int = 0, max_positions: int = 128) -> Path:
    """Write a tiny BLEURT regression model into ``folder`` and return the folder."""
    import sentencepiece as spm
    from bleurt_pytorch import BleurtConfig, BleurtForSequenceClassification
    from bleurt_pytorch.bleurt.tokenization_bleurt_sp import BleurtSPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_SENTENCES * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "spm"),
        vocab_size=100,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        pad_piece="[PAD]",
        unk_id=1,
        unk_piece="[UNK]",
        bos_id=-1,
        eos_id=-1,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    corpus.unlink()
    (folder / "spm.vocab").unlink()
    tokenizer = BleurtSPTokenizer(vocab_file=str(folder / "spm.model"), do_lower_case=False)
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = BleurtConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    BleurtForSequenceClassification(config).save_pretrained(folder)
    return folder
