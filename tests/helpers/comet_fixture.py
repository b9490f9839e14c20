"""A tiny COMET checkpoint built offline, for tests that go through unbabel-comet's real code path.

It has the layout of a released model (``Unbabel/wmt22-comet-da``)::

    folder/
      hparams.yaml            # read by comet.load_from_checkpoint for the model class
      checkpoints/model.ckpt  # Lightning checkpoint: state_dict + hyper_parameters
      encoder/                # a 2-layer XLM-R saved with save_pretrained, with its tokenizer

The released checkpoints name their encoder as ``xlm-roberta-large``; here ``pretrained_model``
points to the local ``encoder/`` folder so that nothing comes from the Hugging Face hub. The
weights are random (seeded): the scores mean nothing, but every step of loading and scoring runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

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

needs_comet = pytest.mark.skipif(
    importlib.util.find_spec("comet") is None,
    reason="unbabel-comet is not installed (the [comet] extra)",
)


def build_tiny_comet(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny COMET regression model under ``folder``; return its checkpoints/model.ckpt."""
    import sentencepiece as spm
    from comet.models import RegressionMetric
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    folder = Path(folder)
    encoder_dir = folder / "encoder"
    encoder_dir.mkdir(parents=True, exist_ok=True)

    # XLM-R's tokenizer adds <s>, <pad>, </s>, <unk> itself (fairseq ids 0-3) on top of the
    # SentencePiece pieces; the SentencePiece model only needs its own unk/bos/eos.
    corpus = encoder_dir / "corpus.txt"
    corpus.write_text("\n".join(_SENTENCES * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(encoder_dir / "spm"),
        vocab_size=100,
        hard_vocab_limit=False,
        character_coverage=1.0,
        model_type="unigram",
        minloglevel=2,
    )
    tokenizer = XLMRobertaTokenizerFast(
        vocab_file=str(encoder_dir / "spm.model"), model_max_length=128
    )
    tokenizer.save_pretrained(encoder_dir)

    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(encoder_dir)

    model = RegressionMetric(
        pretrained_model=str(encoder_dir),
        hidden_sizes=[16],
        final_activation="Sigmoid",
        load_pretrained_weights=True,
        local_files_only=True,
    )
    hparams = dict(model.hparams)
    (folder / "checkpoints").mkdir(exist_ok=True)
    checkpoint = folder / "checkpoints" / "model.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": _lightning_version(),
        },
        checkpoint,
    )
    (folder / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    return checkpoint


def _lightning_version() -> str:
    import pytorch_lightning

    return pytorch_lightning.__version__
