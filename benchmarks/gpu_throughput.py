"""GPU training throughput of LLaMA shapes under FSDP on one GPU: one variant per speed change.

The project's own training path, unchanged: a randomly initialised LLaMA of each shape is saved
once as a Hugging Face folder (``save_pretrained``, safetensors, bf16 as real checkpoints ship)
and every run hands that folder to ``XLlamaModule``, whose ``configure_model`` builds, shards,
compiles and checkpoints it exactly as in training (``from_pretrained`` on rank 0 under
``DecoderFSDPStrategy``, meta-device build + ``load_into_shards`` under ``DecoderFSDP2Strategy``),
with its loss, AdamW, schedule and global-norm clipping (``gradient_clip_val`` 1.0, the recipes'),
in a Lightning Trainer, bf16-mixed. Nothing is downloaded.

Variants (``--variants``, by name; ``+ckpt`` after a name turns activation checkpointing on):

- ``padded``: padded batches, ``sdpa``, the full-logits loss. The baseline.
- ``packed-sdpa``: the same examples packed into one row per micro-batch; a dense block-diagonal
  mask (``sdpa`` over the whole row, the fallback path).
- ``packed-flex``: packed, ``flex_attention`` (document-masked block-sparse attention).
- ``packed-flex-chunked``: + the chunked cross-entropy (``loss_chunk_size``; no fp32 logits of the
  whole micro-batch).
- ``packed-flex-chunked-compile``: + ``compile_layers`` (``torch.compile`` per decoder layer).

Every variant of a shape trains the same micro-batches: synthetic instruction examples with
Alpaca-like lengths (log-normal, clipped to ``--max-length``; the first 40% of each a prompt,
label -100) taken in order into a micro-batch until the next would pass ``--tokens-per-batch``.
Packed, a micro-batch is ONE row (``PackCollator``, width rounded up to ``--pad-multiple``);
padded, the same examples are rows of their own padded to the longest (``PadCollator``). Each run
is its own process (its peak memory is its own); the ratios are against the baseline of the same
shape and strategy in the same invocation (or the first variant that ran, when it did not).

Timing runs from the end of optimizer step W (``--warmup-steps``) to the end of step N
(``--steps``), the GPU synchronised at both ends. Tokens/s counts the examples' own tokens (no
padding, no packing tail). MFU = model FLOPs of those tokens per second / the GPU's peak dense
bf16 FLOPs (989 TFLOP/s for H100/H200 SXM); model FLOPs per token = 6 x parameters (embedding
lookup excluded, LM head included) + 12 x layers x hidden x the mean example length (attention),
without the recomputation checkpointing adds or the masked-out work a dense mask does (the usual
convention, as torchtitan's). Peak memory is ``torch.cuda.max_memory_allocated``.

    python benchmarks/gpu_throughput.py                        # 1b and 3b, fsdp and fsdp2, every default variant
    python benchmarks/gpu_throughput.py --shapes 1b --strategies fsdp2 --variants padded packed-flex
    python benchmarks/gpu_throughput.py --shapes 7b            # checkpointing only (fp32 AdamW: ~108 GB)
    python benchmarks/gpu_throughput.py --dry-run              # CPU, a tiny shape: checks every path runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_assets import add_run_arguments, quiet_trainer, report  # noqa: E402

RESULT_PREFIX = "GPU_BENCH_RESULT "
SHAPES = {  # LLaMA-1/2 family shapes (full multi-head attention)
    "1b": dict(
        hidden_size=2048, intermediate_size=5504, num_hidden_layers=22, num_attention_heads=16
    ),
    "3b": dict(
        hidden_size=3200, intermediate_size=8640, num_hidden_layers=26, num_attention_heads=32
    ),
    "7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    ),  # --dry-run
}
VOCAB = {"tiny": 2048}  # every other shape: LLaMA's 32000
DEFAULT_TOKENS = {"1b": 16384, "3b": 8192, "7b": 4096, "tiny": 1024}
"""Example tokens per micro-batch when ``--tokens-per-batch`` is not given."""
LLAMA_7B_CONFIG = dict(
    # the config.json of a LLaMA-7B Hugging Face folder (huggyllama/llama-7b), less its shape
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    hidden_act="silu",
    initializer_range=0.02,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    rope_scaling=None,
    attention_bias=False,
    mlp_bias=False,
    pretraining_tp=1,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    use_cache=True,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
)
VARIANTS = {  # name -> (packing, attention, chunked loss, compile_layers)
    "padded": dict(packing=False, attention="sdpa", chunked=False, compile=False),
    "packed-sdpa": dict(packing=True, attention="sdpa", chunked=False, compile=False),
    "packed-flex": dict(packing=True, attention="flex_attention", chunked=False, compile=False),
    "packed-flex-chunked": dict(
        packing=True, attention="flex_attention", chunked=True, compile=False
    ),
    "packed-flex-chunked-compile": dict(
        packing=True, attention="flex_attention", chunked=True, compile=True
    ),
}
CKPT = "+ckpt"
DEFAULT_VARIANTS = [*VARIANTS, "padded+ckpt", "packed-flex-chunked-compile+ckpt"]
CPU_ATTENTION = {"flex_attention": "sdpa_varlen"}
"""On CPU (``--dry-run``) FlexAttention has no backward: its variants train with per-example sdpa."""
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
"""Dense bf16 peaks from the vendors' data sheets (SXM parts), by a name in the device's name."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["1b", "3b"],
        choices=[s for s in SHAPES if s != "tiny"],
        help="7b runs its variants with activation checkpointing only",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["fsdp", "fsdp2"],
        choices=["fsdp", "fsdp2"],
        help="fsdp: DecoderFSDPStrategy (FSDP1, the recipes'); fsdp2: DecoderFSDP2Strategy",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        metavar="NAME",
        help=f"among {', '.join(VARIANTS)}, each optionally with {CKPT} (default: %(default)s)",
    )
    parser.add_argument(
        "--tokens-per-batch",
        type=int,
        help="example tokens per micro-batch (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_TOKENS.items() if k != "tiny")
        + ")",
    )
    parser.add_argument(
        "--pad-multiple", type=int, default=64, help="row width rounded up to a multiple of this"
    )
    parser.add_argument(
        "--loss-chunk-size",
        type=int,
        default=1024,
        help="rows of logits at once (chunked variants)",
    )
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (N)")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=5,
        help="steps left out of the timing (W); compile needs a few",
    )
    parser.add_argument(
        "--accumulate", type=int, default=1, help="micro-batches per optimizer step"
    )
    parser.add_argument(
        "--max-length", type=int, default=512, help="longest example (the recipes: 512)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO / "artifacts" / "gpu_bench",
        help="where the random models are saved, one folder per shape and seed (reused)",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=1800, help="seconds one variant may take"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny shape, 3 steps, FSDP2 only, sdpa_varlen for flex: checks the path runs",
    )
    add_run_arguments(  # --worker: the JSON settings of one run, for the subprocess
        parser,
        seed_help="seed of the random models and of the data",
        out_help="also write the table (.md) or every result (.json)",
        worker={},
    )
    parser.add_argument("--build-model", help=argparse.SUPPRESS)  # JSON settings of a model to save
    args = parser.parse_args(argv)
    for name in args.variants:
        if name.removesuffix(CKPT) not in VARIANTS:
            parser.error(
                f"unknown variant {name!r}: expected one of {', '.join(VARIANTS)}, optionally with {CKPT}"
            )
    if args.dry_run:
        args.shapes, args.strategies = ["tiny"], ["fsdp2"]
        args.steps, args.warmup_steps, args.max_length = 3, 1, 256
    if not 1 <= args.warmup_steps < args.steps:
        parser.error("--warmup-steps must be at least 1 and less than --steps")
    return args


def variant_list(names: list[str], shape: str) -> list[str]:
    """The variants to run for ``shape``, in order, without repeats (7b: every one checkpointed)."""
    if shape == "7b":
        names = [n if n.endswith(CKPT) else n + CKPT for n in names]
    return list(dict.fromkeys(names))


def skip_reason(strategy: str, name: str) -> str | None:
    """Why a variant cannot run under a strategy (the module refuses it), or None."""
    if strategy == "fsdp" and VARIANTS[name.removesuffix(CKPT)]["compile"]:
        return "compile_layers needs DecoderFSDP2Strategy (FSDP1's mixed precision and torch.compile do not mix)"
    return None


def describe(name: str, cpu: bool) -> dict:
    """A variant's settings: packing, attention (as it runs on this device), chunked, compile, ckpt."""
    settings = dict(VARIANTS[name.removesuffix(CKPT)], checkpointing=name.endswith(CKPT))
    if cpu:
        settings["attention"] = CPU_ATTENTION.get(settings["attention"], settings["attention"])
    return settings


# --- the model folder -----------------------------------------------------------------------
def llama_config(shape: dict, vocab_size: int, **overrides):
    """A LLaMA-7B folder's config (``use_cache`` on, ``rms_norm_eps`` 1e-6, rope...) at another shape."""
    from transformers import LlamaConfig

    fields = {**LLAMA_7B_CONFIG, **shape, "vocab_size": vocab_size}
    fields["num_key_value_heads"] = shape.get("num_key_value_heads", fields["num_attention_heads"])
    fields.update(overrides)
    return LlamaConfig(**fields)


def save_random_llama(
    out_dir: Path, config, seed: int = 0, dtype: str = "bfloat16", device: str = "cpu"
) -> Path:
    """A randomly initialised ``LlamaForCausalLM`` saved as a Hugging Face folder (safetensors).

    Built on ``device`` (a GPU initialises a 7B in seconds) and stored in ``dtype``, as real
    checkpoints ship (fp16/bf16); ``from_pretrained`` loads it back in fp32, as for LLaMA-7B.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model.to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def ensure_model(shape: str, seed: int, root: Path, cpu: bool) -> Path:
    """The random model folder of ``shape``: built in a subprocess (the parent never touches the
    GPU), reused while its stamp matches."""
    out = root / f"random-{shape}-s{seed}"
    stamp = out / "bench_model.json"
    wanted = {
        "shape": SHAPES[shape],
        "vocab": VOCAB.get(shape, 32000),
        "seed": seed,
        "config": LLAMA_7B_CONFIG,
    }
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(wanted)):
        return out
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    settings = {"shape": shape, "seed": seed, "out": str(out), "device": "cpu" if cpu else "cuda"}
    process = subprocess.run(
        [sys.executable, __file__, "--build-model", json.dumps(settings)],
        capture_output=True,
        text=True,
    )
    if process.returncode != 0:
        sys.exit(f"building the {shape} model failed:\n{process.stderr[-4000:]}")
    stamp.write_text(json.dumps(wanted))
    print(
        f"saved a random {shape} LLaMA to {out} ({time.perf_counter() - started:.0f} s)", flush=True
    )
    return out


def build_model(settings: dict) -> None:
    import torch

    device = (
        settings["device"] if settings["device"] == "cpu" or torch.cuda.is_available() else "cpu"
    )
    shape = settings["shape"]
    save_random_llama(
        Path(settings["out"]),
        llama_config(SHAPES[shape], VOCAB.get(shape, 32000)),
        settings["seed"],
        "bfloat16",
        device,
    )


# --- the data -------------------------------------------------------------------------------
def example_stream(vocab: int, max_length: int, seed: int):
    """Instruction-like examples: Alpaca-like lengths, prompt tokens masked out of the loss."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        n = int(np.clip(rng.lognormal(math.log(150), 0.6), 16, max_length))
        ids = rng.integers(3, vocab, n).tolist()
        prompt = int(n * 0.4)
        yield {"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]}


def micro_batches(
    count: int, tokens_per_batch: int, vocab: int, max_length: int, seed: int
) -> list[list[dict]]:
    """``count`` micro-batches: examples in order, each batch filled until the next example
    would pass ``tokens_per_batch`` example tokens."""
    if max_length > tokens_per_batch:
        raise ValueError(
            f"--tokens-per-batch {tokens_per_batch} cannot hold an example of {max_length} tokens"
        )
    batches: list[list[dict]] = []
    current: list[dict] = []
    used = 0
    for example in example_stream(vocab, max_length, seed):
        n = len(example["input_ids"])
        if current and used + n > tokens_per_batch:
            batches.append(current)
            if len(batches) == count:
                break
            current, used = [], 0
        current.append(example)
        used += n
    return batches


# --- one run (inside its own process) -------------------------------------------------------
def run_one(settings: dict) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from lightning_xllama.data.collate import PadCollator
    from lightning_xllama.data.packing import PackCollator
    from lightning_xllama.training.module import XLlamaModule
    from lightning_xllama.training.strategies import DecoderFSDP2Strategy, DecoderFSDPStrategy

    cpu = settings["dry_run"]
    variant = describe(settings["variant"], cpu)
    batches = micro_batches(
        settings["steps"] * settings["accumulate"],
        settings["tokens_per_batch"],
        VOCAB.get(settings["shape"], 32000),
        settings["max_length"],
        settings["seed"],
    )
    example_tokens = [sum(len(e["input_ids"]) for e in batch) for batch in batches]

    class Meter(L.Callback):
        """Example tokens, computed row tokens and wall time of the steps after the warm-up."""

        def __init__(self):
            self.tokens = self.row_tokens = self.examples = 0
            self.start = self.end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= settings["warmup_steps"]:
                self.tokens += example_tokens[
                    batch_idx
                ]  # the examples' own, whatever the collator adds
                self.examples += len(batches[batch_idx])
                self.row_tokens += batch["input_ids"].numel()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % settings["accumulate"]:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if trainer.global_step == settings["warmup_steps"]:
                self.start = time.perf_counter()
            elif trainer.global_step > settings["warmup_steps"]:
                self.end = time.perf_counter()

    checkpointing = variant["checkpointing"]
    if settings["strategy"] == "fsdp2":
        strategy = DecoderFSDP2Strategy(
            param_dtype="fp32" if cpu else "bf16", activation_checkpointing=checkpointing
        )
    else:
        strategy = DecoderFSDPStrategy(
            activation_checkpointing=checkpointing, state_dict_type="full"
        )
    pad = settings["pad_multiple"]
    collate = (
        PackCollator(0, None, pad_to_multiple_of=pad)
        if variant["packing"]
        else PadCollator(0, pad_to_multiple_of=pad)
    )
    # batch_size None: each item (a micro-batch's examples) goes to the collator as it is
    loader = DataLoader(batches, batch_size=None, collate_fn=collate, num_workers=2, shuffle=False)
    meter = Meter()
    L.seed_everything(settings["seed"])
    trainer = quiet_trainer(
        accelerator="cpu" if cpu else "gpu",
        strategy=strategy,
        precision="32-true" if cpu else "bf16-mixed",
        max_steps=settings["steps"],
        accumulate_grad_batches=settings["accumulate"],
        gradient_clip_val=1.0,
        callbacks=[meter],
        use_distributed_sampler=False,  # one device: keep the micro-batches in order (the meter indexes them)
    )
    module = XLlamaModule(
        settings["model_dir"],
        learning_rate=2e-5,
        warmup_ratio=0.03,
        attn_implementation=variant["attention"],
        compile_layers=variant["compile"],
        loss_chunk_size=settings["loss_chunk_size"] if variant["chunked"] else None,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(module, train_dataloaders=loader)
    except torch.OutOfMemoryError:
        return {**settings, "oom": True}
    params = sum(p.numel() for n, p in module.model.named_parameters() if "embed_tokens" not in n)
    return {
        **settings,
        "oom": False,
        "seconds": meter.end - meter.start,
        "tokens": meter.tokens,
        "row_tokens": meter.row_tokens,
        "examples": meter.examples,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "flop_parameters": params,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": {m: __import__(m).__version__ for m in ("torch", "lightning", "transformers")},
        "final_loss": float(trainer.callback_metrics["train/loss"]),
    }


# --- the table ------------------------------------------------------------------------------
def peak_flops(device: str, override: float | None) -> float | None:
    if override is not None:
        return override * 1e12
    return next(
        (tflops * 1e12 for name, tflops in PEAK_BF16_TFLOPS.items() if name in device), None
    )


def ran(result: dict) -> bool:
    return "seconds" in result and result["seconds"] > 0


def summarise(result: dict, peak: float | None, mean_length: float) -> dict:
    if not ran(result):
        return {"tokens_s": None, "mfu": None, "memory": None}
    tokens_s = result["tokens"] / result["seconds"]
    shape = SHAPES[result["shape"]]
    flops_per_token = (
        6 * result["flop_parameters"]
        + 12 * shape["num_hidden_layers"] * shape["hidden_size"] * mean_length
    )
    return {
        "tokens_s": tokens_s,
        "mfu": tokens_s * flops_per_token / peak if peak else None,
        "memory": result["peak_memory_gb"],
    }


def status(result: dict) -> str | None:
    """Why a run has no figures (OOM, skipped, failed), or None."""
    if result.get("oom"):
        return "OOM"
    if result.get("skipped"):
        return "skipped"
    if result.get("error"):
        return "failed"
    return None


def baseline(runs: list[dict]) -> dict | None:
    """The run the ratios of a shape and strategy are against: ``padded`` if it ran, else
    ``padded+ckpt`` (the padded rows without checkpointing may not fit), else the first that ran."""
    done = [r for r in runs if ran(r)]
    for name in ("padded", "padded" + CKPT):
        found = next((r for r in done if r["variant"] == name), None)
        if found:
            return found
    return done[0] if done else None


def baselines(results: list[dict]) -> str:
    """Which run each shape and strategy's ratios are against, in words."""
    groups = dict.fromkeys((r["shape"], r["strategy"]) for r in results)
    named = []
    for shape, strategy in groups:
        reference = baseline(
            [r for r in results if (r["shape"], r["strategy"]) == (shape, strategy)]
        )
        named.append(f"{shape} {strategy}: {reference['variant'] if reference else 'none ran'}")
    return "; ".join(named)


def table(results: list[dict], peak: float | None, mean_lengths: dict[str, float]) -> str:
    def cell(value, fmt, why):
        return why if why else "n/a" if value is None else format(value, fmt)

    head = [
        "shape",
        "strategy",
        "variant",
        "attention",
        "ckpt",
        "tokens/s",
        "x base",
        "MFU",
        "peak GB",
        "x base",
        "padding",
        "final loss",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---|---|" + "---:|" * 7]
    for group in dict.fromkeys((r["shape"], r["strategy"]) for r in results):
        runs = [r for r in results if (r["shape"], r["strategy"]) == group]
        mean_length = mean_lengths[group[0]]
        reference = baseline(runs)
        base = summarise(reference, peak, mean_length) if reference else None
        for run in runs:
            s, why = summarise(run, peak, mean_length), status(run)
            variant = describe(run["variant"], run["dry_run"])
            speed = s["tokens_s"] / base["tokens_s"] if base and s["tokens_s"] else None
            memory = (
                s["memory"] / base["memory"] if base and s["memory"] and base["memory"] else None
            )
            padding = 1 - run["tokens"] / run["row_tokens"] if ran(run) else None
            loss = run.get("final_loss")
            rows.append(
                "| "
                + " | ".join(
                    [
                        run["shape"],
                        run["strategy"],
                        run["variant"],
                        variant["attention"],
                        "on" if variant["checkpointing"] else "off",
                        cell(s["tokens_s"], ",.0f", why),
                        cell(speed, ".2f", why),
                        cell(s["mfu"], ".1%", why),
                        cell(s["memory"], ".1f", why),
                        cell(memory, ".2f", why),
                        cell(padding, ".0%", why),
                        cell(loss, ".3f", why),
                    ]
                )
                + " |"
            )
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    if args.build_model:
        build_model(json.loads(args.build_model))
        return
    if args.worker:
        report(run_one(json.loads(args.worker)), RESULT_PREFIX)
        return
    if args.dry_run:
        print(
            "note: dry run on CPU: FSDP2 only (FSDP1 needs CUDA), sdpa_varlen in place of flex_attention "
            "(FlexAttention has no CPU backward), fp32",
            flush=True,
        )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    temp = tempfile.mkdtemp(prefix="gpu_bench_") if args.dry_run else None
    results, mean_lengths, failed = [], {}, 0
    for shape in args.shapes:
        tokens_per_batch = args.tokens_per_batch or DEFAULT_TOKENS[shape]
        batches = micro_batches(
            args.steps * args.accumulate,
            tokens_per_batch,
            VOCAB.get(shape, 32000),
            args.max_length,
            args.seed,
        )
        lengths = [len(e["input_ids"]) for b in batches for e in b]
        mean_lengths[shape] = sum(lengths) / len(lengths)
        print(
            f"{shape}: {len(batches)} micro-batches of {tokens_per_batch} example tokens at most, "
            f"{len(lengths) / len(batches):.1f} examples each, mean length {mean_lengths[shape]:.0f}",
            flush=True,
        )
        model_dir = ensure_model(
            shape, args.seed, Path(temp) if temp else args.model_dir, args.dry_run
        )
        for strategy in args.strategies:
            for name in variant_list(args.variants, shape):
                settings = dict(
                    shape=shape,
                    strategy=strategy,
                    variant=name,
                    model_dir=str(model_dir),
                    tokens_per_batch=tokens_per_batch,
                    pad_multiple=args.pad_multiple,
                    loss_chunk_size=args.loss_chunk_size,
                    steps=args.steps,
                    warmup_steps=args.warmup_steps,
                    accumulate=args.accumulate,
                    max_length=args.max_length,
                    seed=args.seed,
                    dry_run=args.dry_run,
                )
                reason = skip_reason(strategy, name)
                if reason:
                    results.append({**settings, "skipped": reason})
                    print(f"{shape} {strategy} {name}: skipped: {reason}", flush=True)
                    continue
                started = time.perf_counter()
                try:
                    process = subprocess.run(
                        [sys.executable, __file__, "--worker", json.dumps(settings)],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=args.run_timeout,
                    )
                    lines = [
                        line
                        for line in process.stdout.splitlines()
                        if line.startswith(RESULT_PREFIX)
                    ]
                    error = None if process.returncode == 0 and lines else process.stderr[-3000:]
                except subprocess.TimeoutExpired:
                    lines, error = [], f"timed out after {args.run_timeout:.0f} s"
                if error is not None:
                    failed += 1
                    results.append({**settings, "error": error})
                    print(f"{shape} {strategy} {name}: FAILED\n{error}", flush=True)
                    continue
                results.append(json.loads(lines[0][len(RESULT_PREFIX) :]))
                label = (
                    "OOM"
                    if results[-1]["oom"]
                    else f"{results[-1]['tokens'] / results[-1]['seconds']:,.0f} tokens/s"
                )
                print(
                    f"{shape} {strategy} {name}: {label} ({time.perf_counter() - started:.0f} s with start-up)",
                    flush=True,
                )
    if temp:
        shutil.rmtree(temp, ignore_errors=True)
    done = next((r for r in results if ran(r)), {})
    device = done.get("device", "unknown")
    peak = peak_flops(device, args.peak_tflops)
    precision = "fp32 (dry run)" if args.dry_run else "bf16-mixed"
    header = (
        f"- {device}; 1 device, {precision}; "
        f"{', '.join(f'{k} {v}' for k, v in done.get('versions', {}).items())}; "
        f"peak {peak / 1e12 if peak else 'unknown'} TFLOP/s\n"
        f"- micro-batches: examples up to {args.max_length} tokens, "
        + ", ".join(
            f"{s} {args.tokens_per_batch or DEFAULT_TOKENS[s]} example tokens (mean length {mean_lengths[s]:.0f})"
            for s in args.shapes
        )
        + f"; packed = one row, width a multiple of {args.pad_multiple}; x {args.accumulate} accumulation; "
        f"chunked loss {args.loss_chunk_size} rows; steps {args.steps}, timed {args.warmup_steps + 1}-{args.steps}\n"
        "- tokens/s: the examples' tokens (no padding); padding: share of the computed row tokens that are padding; "
        f"x base: against the baseline of the same shape and strategy ({baselines(results)})\n"
    )
    text = header + "\n" + table(results, peak, mean_lengths)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(results, indent=1) if args.out.suffix == ".json" else text + "\n"
        )
        print(f"written to {args.out}")
    if failed:
        sys.exit(f"{failed} run(s) failed")


if __name__ == "__main__":
    main()
