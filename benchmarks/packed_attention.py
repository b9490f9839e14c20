"""Packed rows with document-masked attention against padded batches: training tokens/s.

The same examples, Alpaca-like lengths (log-normal around 150 tokens, a long tail cut at
``--max-length``, the first ~40% of each a masked prompt), in the same micro-batches, trained
(forward and backward of ``XLlamaModule.response_loss``) three ways on a randomly initialised
LLaMA saved as a Hugging Face folder and loaded the way a user's model is:

- ``padded``: ``PadCollator``, sdpa with the 2D padding mask (the baseline);
- ``packed, dense mask``: ``PackCollator`` (one row per micro-batch), sdpa with the block-diagonal
  4D mask built from the position ids: attention costs the square of the row;
- ``packed, document-masked``: the same rows with ``sdpa_varlen`` on CPU (causal sdpa per
  example) or ``flex_attention`` on a GPU: attention costs what the examples cost.

Every variant runs ``--repeats`` times in alternating order in one process; the table gives the
median tokens/s (example tokens, no padding) and the ratio to the padded baseline.

    .venv/bin/python benchmarks/packed_attention.py [--batch-size 16] [--batches 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16, help="examples per micro-batch")
    parser.add_argument("--batches", type=int, default=6, help="timed micro-batches per repeat")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def alpaca_like(count: int, max_length: int, vocab: int, seed: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(150), 0.7, count).astype(int), 16, max_length)
    examples = []
    for n in lengths:
        ids = rng.integers(3, vocab, n).tolist()
        prompt = int(n * 0.4)
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lightning_xllama.data.collate import PadCollator
    from lightning_xllama.data.packing import PackCollator
    from lightning_xllama.training.module import XLlamaModule

    args = parse_args()
    torch.manual_seed(args.seed)
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if not gpu:
        torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="packed_attention_"))
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden_size,
        intermediate_size=args.hidden_size * 8 // 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=max(2048, args.max_length * args.batch_size),
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    examples = alpaca_like(args.batches * args.batch_size, args.max_length, args.vocab, args.seed)
    groups = [examples[i : i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
    document = "flex_attention" if gpu else "sdpa_varlen"
    variants = {
        "padded (sdpa, 2D mask)": ("sdpa", PadCollator(0)),
        "packed, dense 4D mask (sdpa)": ("sdpa", PackCollator(0, pad_to_multiple_of=64)),
        f"packed, document-masked ({document})": (document, PackCollator(0, pad_to_multiple_of=64)),
    }
    modules, batches = {}, {}
    for name, (implementation, collate) in variants.items():
        module = XLlamaModule(str(folder), attn_implementation=implementation)
        module.configure_model()
        modules[name] = module.to(device)
        batches[name] = [
            {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(g).items()}
            for g in groups
        ]
    tokens = sum(len(e["input_ids"]) for e in examples)
    cells = {name: sum(b["input_ids"].numel() for b in batches[name]) for name in variants}

    def run(name: str) -> float:
        module = modules[name]
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches[name]:
            loss, count = module.response_loss(batch)
            (loss / count).backward()
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for name in variants:  # warm-up: allocator, lazy initialisation, compiled kernels
        run(name)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name in variants if repeat % 2 == 0 else reversed(list(variants)):
            seconds[name].append(run(name))
    base = tokens / statistics.median(seconds[next(iter(variants))])
    print(
        f"- {device}; {sum(p.numel() for p in modules[next(iter(variants))].parameters()) / 1e6:.1f}M parameters; "
        f"{len(examples)} examples in micro-batches of {args.batch_size}, mean length {tokens / len(examples):.0f}, "
        f"max {args.max_length}; median of {args.repeats} repeats; torch {torch.__version__}\n"
    )
    print("| variant | tokens/s | x padded | real tokens in the batch tensors |")
    print("|---|---:|---:|---:|")
    for name in variants:
        rate = tokens / statistics.median(seconds[name])
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {tokens / cells[name]:.1%} |")


if __name__ == "__main__":
    main()
