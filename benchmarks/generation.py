"""Generation throughput: the project's batched generator against one prompt at a time.

Both paths decode the same translation prompts with the same small pretrained LLaMA, greedily,
with the KV cache, until EOS or ``--max-new-tokens``:

- batched: ``lightning_xllama.evaluation.generation.generate`` (prompts sorted by length,
  left-padded batches of ``--batch-size``, outputs returned in input order);
- one at a time: ``model.generate`` on each prompt alone (a batch of one, no padding), the
  plain loop a user would write.

The prompts are Alpaca translation prompts, as the translation callback builds them, from the
synthetic test set in both directions (English -> syn_far and back, interleaved), so that their
lengths differ. Both paths tokenise and decode inside their timed window.

Greedy decoding should give the same text both ways; the run counts the identical outputs and
prints the first that differs. A difference is not hidden: left padding changes the shapes of
the matrix products and adds masked positions to attention, so the float32 logits can differ in
their last bits, and where two tokens are nearly tied the greedy choice (and all that follows)
can change.

Each path runs once untimed (lazy initialisation), then ``--repeats`` times, in alternating
order. The table shows the median wall time with its min-max; the speed-up is the one-at-a-time
wall time over the batched one within each repeat (the two runs are close in time, so a load
change on a shared machine hits both), its median and min-max. Generated tokens are the ones
the one-at-a-time path generated (EOS included; exact, as a batch of one has no padding),
credited to both paths as the same useful work: the batched path also computes tokens for rows
that finished before the longest of their batch.

The speed-up depends on how long the responses are. On CPU the prompt's forward pass (about 65
tokens of Alpaca prompt here) is compute-bound and gains little from batching, while each
decoding step of a batch of one is mostly fixed overhead that a batch shares. The base model
writes short answers (about 5 tokens), so ``--min-new-tokens`` (EOS suppressed until then, for
both paths) stands in for a tuned model's longer ones, and ``--max-new-tokens 1`` times the
prompt pass alone.

The model is built once by ``prepare_demo`` and cached under ``artifacts/bench/`` (the corpus
sizes of ``train_throughput.py``, so a model of the same shape, steps and seed is shared). It is
pretrained for 200 steps, as the demo's: after 20 steps it answers almost every prompt with
EOS at once, which would time little but the prompt.

    .venv/bin/python benchmarks/generation.py [--prompts 64] [--batch-size 32] [--repeats 5] [--out run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from bench_assets import (  # benchmarks/ is on sys.path as the script folder
    add_asset_arguments,
    add_run_arguments,
    build_assets,
)

from lightning_xllama.demo.layout import DataLayout, DemoLayout

LANGUAGE = "syn_far"
# As train_throughput.py: smaller corpora than the demo's, so the first build stays short.
PATHS = {
    "batched": "lightning_xllama generate (batched)",
    "single": "model.generate, one prompt at a time",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prompts",
        type=int,
        default=64,
        help="translation prompts (at most 400: 200 test pairs x 2 directions)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="prompts per batch of the batched path"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=40,
        help="most tokens generated per prompt (both paths)",
    )
    parser.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="suppress EOS until this many tokens (both paths, via the model's generation config): "
        "stands in for a tuned model's longer answers; 0 keeps the model's own lengths",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of each path, in alternating order"
    )
    add_asset_arguments(
        parser,
        200,
        "pretraining steps of the cached model (200, as the demo: it writes words, then EOS)",
    )
    add_run_arguments(
        parser,
        seed=42,
        seed_help="seed of the corpora and of the pretraining",
        out_help="also write the summary, every run and the outputs as JSON",
        threads_help="torch intra-op threads; 1 by default because on a shared machine several "
        "threads spin-wait for a busy core and the timings swing",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.prompts <= 400:
        parser.error("--prompts must be between 1 and 400")
    if not 0 <= args.min_new_tokens <= args.max_new_tokens:
        parser.error("--min-new-tokens must be between 0 and --max-new-tokens")
    return args


def translation_prompts(assets: Path, count: int) -> list[str]:
    """Test-set prompts, English -> target and target -> English interleaved."""
    from lightning_xllama.data.sources import read_parallel
    from lightning_xllama.data.tasks import translation_prompt_instruction
    from lightning_xllama.prompts import alpaca_prompt

    pairs = read_parallel(DataLayout(assets / "data").translation_test(LANGUAGE), "en", LANGUAGE)
    to_target = translation_prompt_instruction("en", LANGUAGE)
    to_english = translation_prompt_instruction(LANGUAGE, "en")
    prompts = [
        p
        for en, tgt in pairs
        for p in (alpaca_prompt(to_target, en), alpaca_prompt(to_english, tgt))
    ]
    return prompts[:count]


def one_at_a_time(
    model, tokenizer, prompts: list[str], max_new_tokens: int
) -> tuple[list[str], list[int]]:
    """The plain loop: each prompt alone, the same greedy settings as the project's generator.

    Also returns how many tokens each response took (EOS included): a batch of one has no
    padding, so that is exact, while the batched path pads finished rows until its batch ends.
    """
    import torch

    outputs, counts = [], []
    with torch.no_grad():
        for prompt in prompts:
            input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            generated = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = generated[0, input_ids.shape[1] :]
            outputs.append(tokenizer.decode(new, skip_special_tokens=True).strip())
            counts.append(len(new))
    return outputs, counts


def timed(
    path: str, model, tokenizer, prompts: list[str], args: argparse.Namespace
) -> tuple[float, list[str]]:
    from lightning_xllama.evaluation.generation import generate

    start = time.perf_counter()
    if path == "batched":
        outputs = generate(model, tokenizer, prompts, args.batch_size, args.max_new_tokens)
    else:
        outputs, _ = one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    return time.perf_counter() - start, outputs


def markdown_table(summary: dict[str, dict]) -> str:
    lines = [
        "| path | prompts | wall s (median, min-max) | prompts/s | generated tokens/s "
        "| speed-up ratio (median, min-max) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path, s in summary.items():
        lines.append(
            f"| {PATHS[path]} | {s['prompts']} | {s['wall_s']:.2f} ({s['wall_s_min']:.2f}-{s['wall_s_max']:.2f}) "
            f"| {s['prompts_per_s']:.1f} | {s['tokens_per_s']:.0f} "
            f"| {s['speedup']:.2f} ({s['speedup_min']:.2f}-{s['speedup_max']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    torch.set_num_threads(
        args.threads
    )  # before the build too: its pretraining crawls with threads fighting for cores
    assets = build_assets(args)
    tokenizer = load_tokenizer(str(DemoLayout(assets).base_model))
    model = AutoModelForCausalLM.from_pretrained(
        str(DemoLayout(assets).base_model), dtype=torch.float32, attn_implementation="sdpa"
    )
    model.eval()
    if args.min_new_tokens:
        model.generation_config.min_new_tokens = (
            args.min_new_tokens
        )  # generate() merges it: both paths get it
    prompts = translation_prompts(assets, args.prompts)

    load_before = os.getloadavg()[0]
    # Untimed warm-up of both paths (lazy initialisation); its outputs are the ones compared.
    single, counts = one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    outputs = {"batched": timed("batched", model, tokenizer, prompts, args)[1], "single": single}
    walls: dict[str, list[float]] = {path: [] for path in PATHS}
    for repeat in range(args.repeats):
        order = list(PATHS) if repeat % 2 == 0 else list(PATHS)[::-1]
        for path in order:
            wall, texts = timed(path, model, tokenizer, prompts, args)
            walls[path].append(wall)
            if texts != outputs[path]:
                print(
                    f"WARNING: the {path} path gave other outputs in repeat {repeat + 1} than in its warm-up"
                )
        print(
            f"repeat {repeat + 1}/{args.repeats}: batched {walls['batched'][-1]:.2f} s, "
            f"one at a time {walls['single'][-1]:.2f} s",
            flush=True,
        )

    # Both paths are credited with the same useful work: the one-at-a-time responses' tokens.
    tokens = sum(counts)
    speedups = [one / batch for one, batch in zip(walls["single"], walls["batched"])]
    summary = {}
    for path in PATHS:
        wall = statistics.median(walls[path])
        ratios = speedups if path == "batched" else [1.0]
        summary[path] = {
            "prompts": len(prompts),
            "wall_s": wall,
            "wall_s_min": min(walls[path]),
            "wall_s_max": max(walls[path]),
            "prompts_per_s": len(prompts) / wall,
            "generated_tokens": tokens,
            "tokens_per_s": tokens / wall,
            "speedup": statistics.median(ratios),
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
        }

    identical = sum(a == b for a, b in zip(outputs["batched"], outputs["single"]))
    prompt_lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    versions = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers"))
    header = (
        f"- small LLaMA hidden {args.hidden_size}, {args.layers} layers, pretrained {args.pretrain_steps} steps "
        f"({assets.name}); float32, sdpa; greedy, KV cache; max new tokens {args.max_new_tokens}, "
        f"min new tokens {args.min_new_tokens}; batch size {args.batch_size}; repeats {args.repeats}; "
        f"torch threads {torch.get_num_threads()}; {versions}\n"
        f"- prompts {min(prompt_lengths)}-{max(prompt_lengths)} tokens; responses {min(counts)}-{max(counts)} tokens "
        f"(EOS included), mean {statistics.mean(counts):.1f}, {tokens} in all; "
        f"{sum(n == args.max_new_tokens for n in counts)} of {len(counts)} reached max new tokens\n"
        f"- 1-minute load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
        f"cores (other processes slow both paths and widen the spread)\n"
        f"- identical outputs under greedy decoding: {identical} of {len(prompts)}\n"
    )
    print("\n" + header + "\n" + markdown_table(summary))
    first_difference = None
    if identical < len(prompts):
        index = next(
            i for i, (a, b) in enumerate(zip(outputs["batched"], outputs["single"])) if a != b
        )
        first_difference = {
            "index": index,
            "prompt": prompts[index],
            "batched": outputs["batched"][index],
            "single": outputs["single"][index],
        }
        print(
            f"\nOUTPUTS DIFFER for {len(prompts) - identical} prompt(s). First, prompt {index}:\n{prompts[index]}\n"
            f"  batched:       {outputs['batched'][index]!r}\n  one at a time: {outputs['single'][index]!r}\n"
            "A few such differences can come from padding: left padding changes the matrix shapes and adds "
            "masked attention positions, so the float32 logits differ in their last bits, and where two tokens are "
            "nearly tied greedy decoding picks another one and the rest of the response follows it. Many "
            "differences, or ones from the first token on, point to a bug (padding side, mask or output order)."
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "summary": summary,
                    "walls_s": walls,
                    "identical_outputs": identical,
                    "first_difference": first_difference,
                    "prompts": prompts,
                    "outputs": outputs,
                    "response_tokens": counts,
                },
                indent=1,
                ensure_ascii=False,
            )
        )
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
