"""GPU training throughput of LLaMA shapes (1B to 3B) under FSDP on one GPU: tokens/s, MFU, memory.

The project's own training path (``XLlamaModule``'s loss, optimizer and schedule, a Lightning
Trainer with the project's FSDP strategy, bf16) on a randomly initialised LLaMA of each shape, so
nothing is downloaded; a 7B with fp32 AdamW state (16 bytes a parameter) does not fit one 80 GB
GPU, hence 1B-3B. For each shape four variants run, each in its own process (so its peak memory
is its own): with and without activation checkpointing, padded or packed batches. The baseline of
each shape is the padded run without checkpointing; the table gives every variant's ratios to it.

Data: synthetic instruction examples with Alpaca-like lengths (log-normal, clipped to
``--max-length``), the first ~40% of each example a prompt (label -100). Padded batches go
through the project's ``PadCollator``; packed ones through its ``PackCollator`` (one row per
micro-batch, per-example position ids, a 4D block-diagonal mask), so a packed step trains on the
same examples without the padding.

Timing runs from the end of optimizer step W (``--warmup-steps``) to the end of step N
(``--steps``), with the GPU synchronised at both ends. Tokens/s counts the examples' tokens (no
padding). MFU = model FLOPs of those tokens per second / the GPU's peak dense bf16 FLOPs; model
FLOPs per token = 6 x parameters (embedding lookup excluded, LM head included) + 12 x layers x
hidden x the mean example length (attention), without the recomputation that checkpointing adds
(the usual convention, as torchtitan's). Peak memory is ``torch.cuda.max_memory_allocated``.

    python benchmarks/gpu_throughput.py [--shapes 1b 3b] [--strategy fsdp|fsdp2] [--out table.md]
    python benchmarks/gpu_throughput.py --dry-run      # CPU, a tiny shape: checks the whole path
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULT_PREFIX = "GPU_BENCH_RESULT "
SHAPES = {  # LLaMA-1/2 family shapes (vocabulary 32000, full multi-head attention)
    "1b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=22, num_attention_heads=16),
    "2b": dict(hidden_size=2560, intermediate_size=6912, num_hidden_layers=24, num_attention_heads=20),
    "3b": dict(hidden_size=3200, intermediate_size=8640, num_hidden_layers=26, num_attention_heads=32),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),  # --dry-run
}
VOCAB = 32000
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]  # (checkpointing, packing)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
"""Dense bf16 peaks from the vendors' data sheets (SXM parts), by a name in the device's name."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["1b", "3b"], choices=[s for s in SHAPES if s != "tiny"])
    parser.add_argument("--strategy", choices=["fsdp", "fsdp2"], default="fsdp",
                        help="fsdp: DecoderFSDPStrategy (FSDP1, the recipes'); fsdp2: DecoderFSDP2Strategy")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (N)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps left out of the timing (W)")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch (the recipes: 4)")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--max-length", type=int, default=512, help="longest example (the recipes: 512)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shape, 3 steps: checks the path runs")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) or every result (.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON settings of one run, set for the subprocess
    args = parser.parse_args(argv)
    if args.dry_run:
        args.shapes, args.steps, args.warmup_steps, args.batch_size, args.max_length = ["tiny"], 3, 1, 2, 64
    if not 1 <= args.warmup_steps < args.steps:
        parser.error("--warmup-steps must be at least 1 and less than --steps")
    return args


# --- one run (inside its own process) -----------------------------------------------------------
def synthetic_examples(count: int, max_length: int, seed: int) -> list[dict]:
    """Instruction-like examples: Alpaca-like lengths, prompt tokens masked out of the loss."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(150), 0.6, count).astype(int), 16, max_length)
    examples = []
    for n in lengths:
        ids = rng.integers(3, VOCAB, n).tolist()
        prompt = int(n * 0.4)
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples


def run_one(settings: dict) -> dict:
    import lightning as L
    import torch
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.utils.data import DataLoader
    from transformers import LlamaConfig, LlamaForCausalLM

    from lightning_xllama.data.collate import PadCollator
    from lightning_xllama.data.packing import PackCollator
    from lightning_xllama.model import XLlamaModule, enable_gradient_checkpointing
    from lightning_xllama.strategies import DecoderFSDP2Strategy, DecoderFSDPStrategy, shard_fsdp2

    cpu = settings["dry_run"]
    shape = SHAPES[settings["shape"]]
    config = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=2048, num_key_value_heads=shape["num_attention_heads"],
                         use_cache=False, attn_implementation="sdpa", **shape)

    class RandomLlama(XLlamaModule):
        """XLlamaModule with a randomly initialised model built on the device (nothing to load)."""

        def configure_model(self) -> None:
            if self.model is not None:
                return
            strategy = self.trainer.strategy
            with torch.device(strategy.root_device):
                self.model = LlamaForCausalLM(config)
            if isinstance(strategy, ModelParallelStrategy):
                if strategy.activation_checkpointing:
                    enable_gradient_checkpointing(self.model)
                shard_fsdp2(self.model, self.device_mesh["data_parallel"], strategy.param_dtype, strategy.reduce_dtype)
            self.parameter_shapes = {f"model.{k}": tuple(v.shape) for k, v in self.model.state_dict().items()}

    class Meter(L.Callback):
        def __init__(self):
            self.tokens = self.examples = 0
            self.start = self.end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= settings["warmup_steps"]:
                self.tokens += int((batch["input_ids"] != 0).sum())  # examples' tokens; 0 is the pad id
                self.examples += settings["batch_size"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % settings["accumulate"]:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if trainer.global_step == settings["warmup_steps"]:
                self.start = time.perf_counter()
            elif trainer.global_step > settings["warmup_steps"]:
                self.end = time.perf_counter()

    checkpointing, packing = settings["checkpointing"], settings["packing"]
    if settings["strategy"] == "fsdp2" or cpu:
        strategy = DecoderFSDP2Strategy(param_dtype="fp32" if cpu else "bf16", activation_checkpointing=checkpointing)
    else:
        strategy = DecoderFSDPStrategy(activation_checkpointing=checkpointing, state_dict_type="full")
    micro_batches = settings["steps"] * settings["accumulate"]
    examples = synthetic_examples(micro_batches * settings["batch_size"], settings["max_length"], settings["seed"])
    collate = PackCollator(0) if packing else PadCollator(0)
    loader = DataLoader(examples, batch_size=settings["batch_size"], collate_fn=collate, num_workers=2, shuffle=False)
    meter = Meter()
    L.seed_everything(settings["seed"])
    trainer = L.Trainer(
        accelerator="cpu" if cpu else "gpu", devices=1, strategy=strategy,
        precision="32-true" if cpu else "bf16-mixed", max_steps=settings["steps"],
        accumulate_grad_batches=settings["accumulate"], callbacks=[meter], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    module = RandomLlama("random-init/llama", learning_rate=2e-5, warmup_ratio=0.03)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(module, train_dataloaders=loader)
    except torch.OutOfMemoryError:
        return {**settings, "oom": True}
    seconds = meter.end - meter.start
    params = sum(p.numel() for n, p in module.model.named_parameters() if "embed_tokens" not in n)
    return {
        **settings, "oom": False, "seconds": seconds, "tokens": meter.tokens, "examples": meter.examples,
        "parameters": sum(p.numel() for p in module.model.parameters()), "flop_parameters": params,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": {m: __import__(m).__version__ for m in ("torch", "lightning", "transformers")},
        "final_loss": float(trainer.callback_metrics["train/loss"]),
    }


# --- the table ----------------------------------------------------------------------------------
def peak_flops(device: str, override: float | None) -> float | None:
    if override is not None:
        return override * 1e12
    return next((tflops * 1e12 for name, tflops in PEAK_BF16_TFLOPS.items() if name in device), None)


def summarise(result: dict, peak: float | None, mean_length: float) -> dict:
    if result["oom"]:
        return {"tokens_s": None, "mfu": None, "memory": None}
    tokens_s = result["tokens"] / result["seconds"]
    shape = SHAPES[result["shape"]]
    flops_per_token = 6 * result["flop_parameters"] + 12 * shape["num_hidden_layers"] * shape["hidden_size"] * mean_length
    return {
        "tokens_s": tokens_s,
        "mfu": tokens_s * flops_per_token / peak if peak else None,
        "memory": result["peak_memory_gb"],
    }


def table(results: list[dict], peak: float | None, mean_length: float) -> str:
    def cell(value, fmt, oom):
        return "OOM" if oom else "n/a" if value is None else format(value, fmt)

    rows = ["| shape | params | checkpointing | packing | tokens/s | x baseline | MFU | peak GB | x baseline |",
            "|" + " --- |" * 9]
    for shape in dict.fromkeys(r["shape"] for r in results):
        runs = [r for r in results if r["shape"] == shape]
        base = summarise(runs[0], peak, mean_length)  # padded, no checkpointing
        for run in runs:
            s = summarise(run, peak, mean_length)
            speed = s["tokens_s"] / base["tokens_s"] if s["tokens_s"] and base["tokens_s"] else None
            memory = s["memory"] / base["memory"] if s["memory"] and base["memory"] else None
            count = run.get("parameters", 0)
            params = "" if run["oom"] else f"{count / 1e9:.2f}B" if count >= 1e8 else f"{count / 1e6:.1f}M"
            rows.append(
                f"| {shape} | {params} | {'on' if run['checkpointing'] else 'off'} | {'on' if run['packing'] else 'off'} "
                f"| {cell(s['tokens_s'], ',.0f', run['oom'])} | {cell(speed, '.2f', run['oom'])} "
                f"| {cell(s['mfu'], '.1%', run['oom'])} | {cell(s['memory'], '.1f', run['oom'])} "
                f"| {cell(memory, '.2f', run['oom'])} |"
            )
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_one(json.loads(args.worker))), flush=True)
        return
    results = []
    for shape in args.shapes:
        for checkpointing, packing in VARIANTS:
            settings = dict(
                shape=shape, checkpointing=checkpointing, packing=packing, strategy=args.strategy,
                steps=args.steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size,
                accumulate=args.accumulate, max_length=args.max_length, seed=args.seed, dry_run=args.dry_run,
            )
            started = time.perf_counter()
            process = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(settings)], capture_output=True, text=True,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            )
            lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if process.returncode != 0 or not lines:
                sys.exit(f"run {settings} failed:\n{process.stderr[-4000:]}")
            results.append(json.loads(lines[0][len(RESULT_PREFIX):]))
            label = "OOM" if results[-1]["oom"] else f"{results[-1]['tokens'] / results[-1]['seconds']:,.0f} tokens/s"
            print(f"{shape} checkpointing={checkpointing} packing={packing}: {label} "
                  f"({time.perf_counter() - started:.0f} s with start-up)", flush=True)
    examples = synthetic_examples(args.steps * args.accumulate * args.batch_size, args.max_length, args.seed)
    mean_length = sum(len(e["input_ids"]) for e in examples) / len(examples)
    device = next((r["device"] for r in results if "device" in r), "unknown")
    peak = peak_flops(device, args.peak_tflops)
    done = next((r for r in results if not r["oom"]), {})
    strategy = "fsdp2 on CPU, fp32 (dry run)" if args.dry_run else f"{args.strategy} on 1 device, bf16"
    header = (
        f"- {device}; strategy {strategy}; micro-batch {args.batch_size} x {args.accumulate} "
        f"accumulation; examples up to {args.max_length} tokens, mean {mean_length:.0f}; steps {args.steps}, "
        f"timed {args.warmup_steps + 1}-{args.steps}; peak {peak / 1e12 if peak else 'unknown'} TFLOPS; "
        f"{', '.join(f'{k} {v}' for k, v in done.get('versions', {}).items())}\n"
        "- baseline: the padded run without checkpointing of the same shape; tokens/s counts examples' tokens, no padding\n"
    )
    text = header + "\n" + table(results, peak, mean_length)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) if args.out.suffix == ".json" else text + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
