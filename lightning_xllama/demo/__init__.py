"""The offline demo: synthetic languages and corpora, a tokenizer and a small base model.

``languages`` registers the artificial languages with the core registry (a plug-in: a config
loads it with ``data.init_args.language_modules: [lightning_xllama.demo.languages]``),
``settings`` holds what each of them is generated from, ``world`` generates the corpora in the
real formats, ``layout`` says where every file goes (read by ``prepare-demo``, ``scaling sweep``,
the benchmarks and the tests), and ``prepare`` builds the assets behind ``python -m
lightning_xllama prepare-demo``. Nothing else in the package imports it.
"""

from lightning_xllama.demo.languages import SyntheticSettings, register_synthetic
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
    "SyntheticSettings",
    "SyntheticWorld",
    "prepare_demo",
    "register_synthetic",
    "pretrain_base_model",
    "render",
    "tokenizer_corpus",
    "train_tokenizer",
]
