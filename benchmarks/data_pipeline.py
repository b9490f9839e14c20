"""Data pipeline throughput and memory: read + mix + tokenise + pack, at 100k and 1M pairs.

Each size runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. A run builds a
``MuITDataModule`` of two generated streams, parallel pairs (English -> German, the size given)
and Alpaca-like JSONL instructions (a twentieth of that), mixed under
``all_exhausted_without_replacement`` (every example once, nothing repeated; dedupe off), then:

- ``prepare_data``: the one pass that validates and indexes every source (timed apart);
- the epoch: the loader's own path, in process (``MixtureDataset.encoded_batches`` reads, mixes
  and tokenises; ``collated`` packs each micro-batch with its 4D mask), timed as examples/s.

The memory criterion is RSS at 1M within 1.2x of RSS at 100k: the pipeline streams, so its
memory must not grow with the corpus. Both the peak and the growth over the RSS measured after
imports and tokenizer loading (the pipeline's own share) are shown.

Padding: the non-padding share of the batch tensors' tokens, for the same examples batched three
ways: padded to each batch's longest example (``pad``), packed into one row per micro-batch
(``pack``, the default), and packed first-fit into rows of at most ``max_length`` tokens
(``pack_length=max_length``). Shown for the epoch's batches (mostly pairs) and for the
Alpaca-like instructions alone, in consecutive batches: log-normal instruction, input and
output lengths with a long tail, cut at ``max_length``.

The corpora and tokenizer are generated once and cached under ``artifacts/bench/data_pipeline``.

    .venv/bin/python benchmarks/data_pipeline.py [--sizes 100000 1000000] [--batch-size 8] [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
LANGUAGE = "de"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="parallel pairs per run")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per micro-batch")
    parser.add_argument("--max-length", type=int, default=512, help="longest example in tokens")
    parser.add_argument("--workers", type=int, default=0, help="the data module's num_workers (0: in process, as timed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated corpora and of the data order")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "artifacts" / "bench" / "data_pipeline")
    parser.add_argument("--out", type=Path, help="also write the table: .json or markdown")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # the size, in a subprocess
    return parser.parse_args(argv)


# --- generated corpora -----------------------------------------------------------------------
def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return list(dict.fromkeys("".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(size * 2)))[:size]


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
        for _ in range(pairs // 20):  # Alpaca: short instructions, inputs on about 40%, long-tailed outputs
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
        from lightning_xllama.demo import train_tokenizer
        from lightning_xllama.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, TRANSLATION_INSTRUCTIONS

        rng = random.Random(seed)
        en_vocab, de_vocab = vocabulary(rng), vocabulary(rng)
        texts = [words(rng, v, 2.5, 0.5, 60) for _ in range(20000) for v in (en_vocab, de_vocab)]
        # the prompt wording, as a real tokenizer has seen ordinary English
        prompts = [ALPACA_WITH_INPUT, ALPACA_NO_INPUT] + [t.format(src="English", tgt="German") for t in TRANSLATION_INSTRUCTIONS]
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
    datamodule = MuITDataModule(
        streams, stop="all_exhausted_without_replacement", batching="pack", batch_size=args.batch_size,
        max_length=args.max_length, num_workers=args.workers, seed=args.seed, tokenizer=paths["tokenizer"],
        cache_dir=str(folder / f"cache-{os.getpid()}"),  # a fresh index: the first pass is measured
    )
    datamodule.tokenizer  # loaded before the baseline RSS is read
    baseline = current_rss_mb()
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    indexed = time.perf_counter() - start
    dataset = datamodule.train_dataset()
    examples, real, packed_cells, alpaca = 0, 0, 0, []
    lengths = []  # of every example, batch by batch: the padding figures are computed after the timing
    start = time.perf_counter()
    for batch in dataset.encoded_batches(epoch=0, start=0):
        tensors = dataset.collated(batch)
        kept = [e for e in batch if "dropped" not in e]
        lengths.append([len(e["input_ids"]) for e in kept])
        alpaca += [len(e["input_ids"]) for e in kept if e["stream"] == 1]
        examples += len(kept)
        real += sum(lengths[-1])
        packed_cells += tensors["input_ids"].numel()
    elapsed = time.perf_counter() - start
    alpaca_batches = [alpaca[i : i + args.batch_size] for i in range(0, len(alpaca), args.batch_size)]
    shutil.rmtree(datamodule.hparams.cache_dir)
    return {
        "pairs": args.worker,
        "examples": examples,
        "index_s": indexed,
        "epoch_s": elapsed,
        "examples_per_s": examples / elapsed,
        "peak_rss_mb": rss_mb(),
        "baseline_rss_mb": baseline,
        "tokens_per_example": real / examples,
        "share_packed_measured": real / packed_cells,
        "mixture": shares(lengths, args.max_length),
        "alpaca": shares(alpaca_batches, args.max_length),
        "truncated": datamodule.train_report.truncated,
    }


def shares(batches: list[list[int]], max_length: int) -> dict[str, float]:
    """Non-padding share of batch tensor tokens: padded, packed in one row, packed in rows."""
    from lightning_xllama.data.packing import pack_rows

    real = sum(sum(b) for b in batches)
    padded = sum(len(b) * max(b) for b in batches)
    rows = 0
    for b in batches:
        packed = pack_rows(b, max_length)
        rows += len(packed) * max(sum(b[i] for i in row) for row in packed)
    return {"pad": real / padded, "pack": real / real, "pack_rows": real / rows}


# --- the table ------------------------------------------------------------------------------
def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"read + mix + tokenise + pack, batch {args.batch_size}, max_length {args.max_length}, "
        f"num_workers {args.workers}, one process per size",
        "",
        "| pairs | examples | index (s) | epoch (s) | examples/s | peak RSS (MB) | RSS over baseline (MB) | tokens/example |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['pairs']:,} | {r['examples']:,} | {r['index_s']:.1f} | {r['epoch_s']:.1f} | {r['examples_per_s']:,.0f} "
            f"| {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:.0f} | {r['tokens_per_example']:.0f} |"
        )
    last = results[-1]
    lines += [
        "",
        f"non-padding share of batch tokens ({last['pairs']:,} pairs run, batches of {args.batch_size}):",
        "",
        "| examples | padded per batch | packed, one row per batch | packed, rows <= max_length |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, key in (("the mixture (pairs + instructions)", "mixture"), ("Alpaca-like instructions alone", "alpaca")):
        share = last[key]
        lines.append(f"| {name} | {share['pad']:.1%} | {share['pack']:.1%} | {share['pack_rows']:.1%} |")
    lines.append(f"(measured on the packed tensors of the run: {last['share_packed_measured']:.1%})")
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        verdict = "within" if ratio <= 1.2 else "NOT within"
        lines += ["", f"peak RSS at {results[-1]['pairs']:,} / at {results[0]['pairs']:,} pairs: {ratio:.2f}x "
                      f"({verdict} 1.2x)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        print(RESULT_PREFIX + json.dumps(worker(args)), flush=True)
        return
    tokenizer = tokenizer_folder(args.cache_dir, args.seed)
    results = []
    for size in args.sizes:
        folder = args.cache_dir / f"pairs{size}"
        paths = generate(folder, size, args.seed)
        (folder / "paths.json").write_text(json.dumps({**paths, "tokenizer": tokenizer}))
        command = [sys.executable, __file__, "--worker", str(size), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length), "--workers", str(args.workers), "--seed", str(args.seed),
                   "--cache-dir", str(args.cache_dir)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the run with {size} pairs failed:\n{done.stderr[-3000:]}")
        line = next(l for l in done.stdout.splitlines() if l.startswith(RESULT_PREFIX))
        results.append(json.loads(line[len(RESULT_PREFIX) :]))
        print(f"{size:,} pairs: {results[-1]['examples_per_s']:,.0f} examples/s, "
              f"peak RSS {results[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    text = table(results, args)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) if args.out.suffix == ".json" else text + "\n")


if __name__ == "__main__":
    main()
