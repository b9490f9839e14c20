"""The small demo model and corpora the benchmarks share, built once and cached by shape."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Optional

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


def child_result(
    done: subprocess.CompletedProcess, what: str, prefix: str = "BENCH_RESULT "
) -> dict:
    """The JSON a measuring child process printed after ``prefix`` (each measurement runs in a
    fresh process, so its peak memory is its own); its stderr if it failed."""
    if done.returncode != 0:
        raise SystemExit(f"the {what} run failed:\n{done.stderr[-3000:]}")
    line = next(row for row in done.stdout.splitlines() if row.startswith(prefix))
    return json.loads(line[len(prefix) :])


def print_and_write(text: str, results, out: Optional[Path]) -> None:
    """Print the table; with ``out``, write it there too (a ``.json`` path: the raw results)."""
    print(text)
    if out:
        out.write_text(json.dumps(results, indent=1) if out.suffix == ".json" else text + "\n")
