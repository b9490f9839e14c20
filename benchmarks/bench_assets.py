"""The small demo model and corpora the benchmarks share, built once and cached by shape."""

from __future__ import annotations

import argparse
from pathlib import Path

CORPUS = dict(pretraining=5000, instructions=1000, parallel=2000, vocab_size=2048)
CACHE_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "bench"


def add_asset_arguments(
    parser: argparse.ArgumentParser, pretrain_steps: int, pretrain_help: str
) -> None:
    """The options :func:`build_assets` reads (the seed stays with each script: it seeds more there)."""
    parser.add_argument(
        "--hidden-size", type=int, default=192, help="width of the small LLaMA (the demo's)"
    )
    parser.add_argument(
        "--layers", type=int, default=4, help="decoder layers of the small LLaMA (the demo's)"
    )
    parser.add_argument("--pretrain-steps", type=int, default=pretrain_steps, help=pretrain_help)
    parser.add_argument(
        "--cache-dir", type=Path, default=CACHE_DIR, help="where the demo assets are cached"
    )


def build_assets(args: argparse.Namespace) -> Path:
    """``prepare_demo`` under ``args.cache_dir``, one folder per model shape, pretraining and seed."""
    from lightning_xllama.demo.prepare import prepare_demo

    out = args.cache_dir / f"h{args.hidden_size}_l{args.layers}_p{args.pretrain_steps}_s{args.seed}"
    prepare_demo(
        output_dir=str(out),
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        pretrain_steps=args.pretrain_steps,
        seed=args.seed,
        **CORPUS,
    )
    return out
