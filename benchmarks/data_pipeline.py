"""Data pipeline throughput and memory: read + mix + tokenise + pack, at 100k and 1M pairs.

Each size runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. A run builds a
``MuITDataModule`` of two generated streams, parallel pairs (English -> German, the size given)
and Alpaca-like JSONL instructions (a twentieth of that), mixed under
``all_exhausted_without_replacement`` (every example once, nothing repeated; dedupe off), then:

- ``prepare_data``: the one pass that validates and indexes every source (timed apart);
- the epoch: the loader's own path, in process (``MixtureDataset.encoded_batches`` reads, mixes,
  tokenises and packs each buffer of ``group_batches`` micro-batches into rows of at most
  ``pack_length`` tokens; ``collated`` builds each micro-batch's tensors), timed as examples/s
  and as the process's CPU time (the wall clock counts other load on the machine).

The memory criterion is RSS at 1M within 1.2x of RSS at 100k: the pipeline streams, so its
memory must not grow with the corpus. Both the peak and the growth over the RSS measured after
imports and tokenizer loading (the pipeline's own share) are shown.

Padding: the non-padding share of the batch tensors' tokens (the fill), for the same examples
batched as the loader batches them under each setting: the timed run records every buffer it
encodes (lengths, in the epoch's order), and the loader's own ``cut_buffer`` re-cuts them for
``pad`` (each batch padded to its longest example), ``group_by_length`` (buffers of
``group_batches``), ``pack`` with one row per micro-batch (no ``pack_length``), ``pack`` with
rows of at most ``pack_length`` one micro-batch at a time (``group_batches 1``), and the timed
setting (``pack_length``, buffers of ``group_batches``). The last is checked against the fill
measured on the timed run's tensors. Shown for the epoch (mostly pairs) and for the Alpaca-like
instructions alone (their lengths in the epoch's order, in buffers of the same size):
log-normal instruction, input and output lengths with a long tail, cut at ``max_length``.

The corpora and tokenizer are generated once and cached under ``artifacts/bench/data_pipeline``.

    .venv/bin/python benchmarks/data_pipeline.py [--sizes 100000 1000000] [--batch-size 8]
        [--max-length 512] [--pack-length 512] [--group-batches 64] [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from array import array
from pathlib import Path
from typing import Optional, Sequence

from bench_assets import (  # benchmarks/ is on sys.path
    add_run_arguments,
    run_benchmark,
    run_worker,
)

REPO = Path(__file__).resolve().parents[1]

LANGUAGE = "de"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="parallel pairs per run"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="examples per micro-batch")
    parser.add_argument("--max-length", type=int, default=512, help="longest example in tokens")
    parser.add_argument(
        "--pack-length", type=int, help="longest packed row in tokens (default: max-length)"
    )
    parser.add_argument(
        "--group-batches", type=int, default=64, help="micro-batches packed together in one buffer"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="the data module's num_workers (0: in process, as timed)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO / "artifacts" / "bench" / "data_pipeline"
    )
    add_run_arguments(  # --worker: the size, in a subprocess
        parser,
        seed_help="seed of the generated corpora and of the data order",
        out_help="also write the table: .json or markdown",
        worker=dict(type=int),
    )
    return parser.parse_args(argv)


# --- generated corpora -----------------------------------------------------------------------
def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return list(
        dict.fromkeys(
            "".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4))))
            for _ in range(size * 2)
        )
    )[:size]


def words(rng: random.Random, vocab: list[str], mean: float, sigma: float, cap: int) -> str:
    count = max(1, min(cap, int(rng.lognormvariate(mean, sigma))))
    return " ".join(rng.choices(vocab, k=count))


def generate(folder: Path, pairs: int, seed: int) -> dict[str, str]:
    """Write ``pairs`` aligned pairs and ``pairs // 20`` Alpaca-like records (cached)."""
    stamp = folder / "done.json"
    paths = {"parallel": str(folder / "train"), "instructions": str(folder / "alpaca.jsonl")}
    if stamp.is_file():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    en_vocab, de_vocab = vocabulary(rng), vocabulary(rng)
    with open(f"{folder}/train.en", "w") as en, open(f"{folder}/train.{LANGUAGE}", "w") as de:
        for _ in range(pairs):  # WikiMatrix-like: about 12 words a sentence, a long tail
            en.write(words(rng, en_vocab, 2.5, 0.5, 120) + ".\n")
            de.write(words(rng, de_vocab, 2.5, 0.5, 120) + ".\n")
    with open(folder / "alpaca.jsonl", "w") as out:
        for _ in range(
            pairs // 20
        ):  # Alpaca: short instructions, inputs on about 40%, long-tailed outputs
            record = {
                "instruction": words(rng, en_vocab, 2.3, 0.4, 60) + "?",
                "input": words(rng, en_vocab, 2.8, 0.7, 200) if rng.random() < 0.4 else "",
                "output": words(rng, en_vocab, 3.6, 0.9, 600) + ".",
            }
            out.write(json.dumps(record) + "\n")
    stamp.write_text(json.dumps({"pairs": pairs, "seed": seed}))
    return paths


def tokenizer_folder(cache: Path, seed: int) -> str:
    folder = cache / "tokenizer"
    if not (folder / "tokenizer_config.json").is_file():
        from lightning_xllama.demo.prepare import train_tokenizer
        from lightning_xllama.prompts import (
            ALPACA_NO_INPUT,
            ALPACA_WITH_INPUT,
            TRANSLATION_INSTRUCTIONS,
        )

        rng = random.Random(seed)
        en_vocab, de_vocab = vocabulary(rng), vocabulary(rng)
        texts = [words(rng, v, 2.5, 0.5, 60) for _ in range(20000) for v in (en_vocab, de_vocab)]
        # the prompt wording, as a real tokenizer has seen ordinary English
        prompts = [ALPACA_WITH_INPUT, ALPACA_NO_INPUT] + [
            t.format(src="English", tgt="German") for t in TRANSLATION_INSTRUCTIONS
        ]
        texts += [line for text in prompts for line in text.splitlines() if line] * 200
        train_tokenizer(texts, folder, vocab_size=4000)
    return str(folder)


# --- one run (in its own process) --------------------------------------------------------------
def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict:
    from lightning_xllama.data import MuITDataModule, Stream

    folder = args.cache_dir / f"pairs{args.worker}"
    paths = json.loads((folder / "paths.json").read_text())
    streams = [
        Stream("parallel", LANGUAGE, paths["parallel"], "en-x"),
        Stream("instructions", "en", paths["instructions"]),
    ]
    pack_length = args.pack_length or args.max_length
    datamodule = MuITDataModule(
        streams,
        stop="all_exhausted_without_replacement",
        batching="pack",
        batch_size=args.batch_size,
        max_length=args.max_length,
        pack_length=pack_length,
        group_batches=args.group_batches,
        num_workers=args.workers,
        seed=args.seed,
        tokenizer=paths["tokenizer"],
        cache_dir=str(folder / f"cache-{os.getpid()}"),  # a fresh index: the first pass is measured
    )
    datamodule.tokenizer  # loaded before the baseline RSS is read
    baseline = current_rss_mb()
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    indexed = time.perf_counter() - start
    dataset = datamodule.train_dataset()
    # every buffer the loader encodes, in the epoch's order: the examples' streams and lengths
    # (-1: dropped), kept compact (a few bytes an example, not to weigh on the RSS measured)
    streams_seen, lengths_seen, bounds = array("b"), array("i"), [0]
    pending: list[list[dict]] = []
    encode = dataset.encode

    def settle() -> None:  # the loader marks each example's stream after encoding: read it then
        while pending:
            for e in pending.pop(0):
                streams_seen.append(e["stream"])
                lengths_seen.append(len(e["input_ids"]) if "dropped" not in e else -1)
            bounds.append(len(lengths_seen))

    def recording(chunk):
        settle()
        pending.append(encode(chunk))
        return pending[-1]

    dataset.encode = recording
    examples, cells, rows, tokens = 0, 0, 0, []
    start, cpu = time.perf_counter(), time.process_time()
    for batch in dataset.encoded_batches(epoch=0, start=0):
        tensors = dataset.collated(batch)
        examples += tensors["report"]["examples"]
        tokens.append(sum(len(e["input_ids"]) for e in batch if "dropped" not in e))
        cells += tensors["input_ids"].numel()
        rows += tensors["input_ids"].shape[0]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    settle()
    real = sum(tokens)
    buffers = [lengths_seen[a:b] for a, b in zip(bounds, bounds[1:])]
    mixture = shares(buffers, args.batch_size, args.group_batches, pack_length)
    if mixture["pack_buffer"] != real / cells:
        raise AssertionError(f"replayed fill {mixture['pack_buffer']} != measured {real / cells}")
    group = args.group_batches * args.batch_size
    alpaca = array("i", (n for n, stream in zip(lengths_seen, streams_seen) if stream == 1))
    shutil.rmtree(datamodule.hparams.cache_dir)
    return {
        "pairs": args.worker,
        "examples": examples,
        "index_s": indexed,
        "epoch_s": elapsed,
        "epoch_cpu_s": cpu,
        "examples_per_s": examples / elapsed,
        "peak_rss_mb": rss_mb(),
        "baseline_rss_mb": baseline,
        "tokens_per_example": real / examples,
        "pack_length": pack_length,
        "share_packed_measured": real / cells,
        "batches": len(tokens),
        "rows_per_batch": rows / len(tokens),
        "batch_tokens_mean": real / len(tokens),
        "batch_tokens_max": max(tokens),
        "mixture": mixture,
        "alpaca": shares(
            [alpaca[i : i + group] for i in range(0, len(alpaca), group)],
            args.batch_size,
            args.group_batches,
            pack_length,
        ),
        "truncated": datamodule.train_report.truncated,
    }


def shares(
    buffers: list[Sequence[int]], batch_size: int, group_batches: int, pack_length: int
) -> dict[str, float]:
    """Non-padding share of the batch tensors' tokens under each batching, the same examples cut
    by the loader's own :func:`~lightning_xllama.data.loader.cut_buffer`. ``buffers``: example
    lengths (-1: dropped) in buffers of ``group_batches * batch_size`` (a worker's last may be
    short), re-cut into single micro-batches where a batching takes one at a time."""
    import numpy as np

    from lightning_xllama.data.loader import cut_buffer

    singles = [b[i : i + batch_size] for b in buffers for i in range(0, len(b), batch_size)]
    real = sum(n for b in buffers for n in b if n >= 0)

    def cells(chunks: list[Sequence[int]], batching: str, length: Optional[int]) -> int:
        total = 0
        for number, chunk in enumerate(chunks):
            encoded = [{"input_ids": range(n)} if n >= 0 else {"dropped": "-"} for n in chunk]
            for batch in cut_buffer(
                encoded, batch_size, batching, length, np.random.default_rng(number)
            ):
                kept = [e for e in batch if "dropped" not in e]
                if not kept:
                    total += 1  # the one-token stand-in
                elif batching in ("pad", "group_by_length"):
                    total += len(kept) * max(len(e["input_ids"]) for e in kept)
                elif length is None:
                    total += sum(len(e["input_ids"]) for e in kept)
                else:  # the collator's rows: as the loader marked them, padded to the longest
                    loads: dict[int, int] = {}
                    for e in kept:
                        loads[e["row"]] = loads.get(e["row"], 0) + len(e["input_ids"])
                    total += len(loads) * max(loads.values())
        return total

    return {
        "pad": real / cells(singles, "pad", None),
        "group_by_length": real / cells(buffers, "group_by_length", None),
        "pack": real / cells(singles, "pack", None),
        "pack_single": real / cells(singles, "pack", pack_length),
        "pack_buffer": real / cells(buffers, "pack", pack_length),
    }


# --- the table ------------------------------------------------------------------------------
def table(results: list[dict], args: argparse.Namespace) -> str:
    last = results[-1]
    lines = [
        f"read + mix + tokenise + pack, batch {args.batch_size}, max_length {args.max_length}, "
        f"pack_length {last['pack_length']}, group_batches {args.group_batches}, num_workers {args.workers}, "
        "one process per size",
        "",
        "| pairs | examples | index (s) | epoch (s) | epoch CPU (s) | examples/s | peak RSS (MB) | RSS over baseline (MB) "
        "| tokens/example |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['pairs']:,} | {r['examples']:,} | {r['index_s']:.1f} | {r['epoch_s']:.1f} | {r['epoch_cpu_s']:.1f} "
            f"| {r['examples_per_s']:,.0f} "
            f"| {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:.0f} | {r['tokens_per_example']:.0f} |"
        )
    lines += [
        "",
        f"non-padding share of batch tokens ({last['pairs']:,} pairs run, micro-batches of {args.batch_size} "
        f"examples, buffers of {args.group_batches} micro-batches):",
        "",
        "| examples | padded per batch | grouped by length | packed, one row per batch "
        f"| packed, rows <= {last['pack_length']}, one batch at a time | packed, rows <= {last['pack_length']}, "
        f"buffers of {args.group_batches} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, key in (
        ("the mixture (pairs + instructions)", "mixture"),
        ("Alpaca-like instructions alone", "alpaca"),
    ):
        s = last[key]
        lines.append(
            f"| {name} | {s['pad']:.1%} | {s['group_by_length']:.1%} | {s['pack']:.1%} "
            f"| {s['pack_single']:.1%} | {s['pack_buffer']:.1%} |"
        )
    lines.append(
        f"(measured on the timed run's tensors, the last column's setting: {last['share_packed_measured']:.1%}; "
        f"{last['rows_per_batch']:.2f} rows a micro-batch, {last['batch_tokens_mean']:,.0f} real tokens a "
        f"micro-batch on average, {last['batch_tokens_max']:,} at most)"
    )
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        verdict = "within" if ratio <= 1.2 else "NOT within"
        lines += [
            "",
            f"peak RSS at {results[-1]['pairs']:,} / at {results[0]['pairs']:,} pairs: {ratio:.2f}x "
            f"({verdict} 1.2x)",
        ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> tuple[str, object]:
    """Each size's run in its own process; the table and the results."""
    tokenizer = tokenizer_folder(args.cache_dir, args.seed)
    results = []
    for size in args.sizes:
        folder = args.cache_dir / f"pairs{size}"
        paths = generate(folder, size, args.seed)
        (folder / "paths.json").write_text(json.dumps({**paths, "tokenizer": tokenizer}))
        options = {
            "--worker": size,
            "--batch-size": args.batch_size,
            "--max-length": args.max_length,
            "--group-batches": args.group_batches,
            "--workers": args.workers,
            "--seed": args.seed,
            "--cache-dir": args.cache_dir,
            **({"--pack-length": args.pack_length} if args.pack_length else {}),
        }
        line = "{:,} pairs: {examples_per_s:,.0f} examples/s, peak RSS {peak_rss_mb:.0f} MB"
        results.append(
            run_worker(__file__, options, f"{size}-pair", lambda r: line.format(size, **r))
        )
    return table(results, args), results


if __name__ == "__main__":
    run_benchmark(sys.argv[1:], parse_args, worker, measure)
