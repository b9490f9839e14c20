"""The offline demo: synthetic languages and corpora, a tokenizer and a small base model.

``world`` generates the corpora in the real formats, ``layout`` says where every file goes (read
by ``prepare-demo``, ``scaling sweep``, the benchmarks and the tests), and ``prepare`` builds the
assets behind ``python -m lightning_xllama prepare-demo``.
"""

from lightning_xllama.demo.layout import DataLayout, DemoLayout
from lightning_xllama.demo.prepare import (
    prepare_demo,
    pretrain_base_model,
    tokenizer_corpus,
    train_tokenizer,
)
from lightning_xllama.demo.world import SyntheticWorld, render

__all__ = [
    "DataLayout",
    "DemoLayout",
    "SyntheticWorld",
    "prepare_demo",
    "pretrain_base_model",
    "render",
    "tokenizer_corpus",
    "train_tokenizer",
]
