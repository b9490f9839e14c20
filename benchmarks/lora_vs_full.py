"""LoRA against full fine-tuning of the same small model: trainable parameters, training memory,
step time and checkpoint size, as LoRA / full ratios measured in one invocation.

Both modes fit ``XLlamaModule`` with the same Lightning ``Trainer`` on the same CoIT batches
(the cached demo model of ``bench_assets``, seed, batch size, steps, learning rate, clipping,
gradient checkpointing (on by default, as in the LoRA recipe), threads); the only difference is ``lora_rank`` (and ``lora_alpha``, ``lora_dropout`` 0). Each
mode runs in its own fresh subprocess, ``--repeats`` times in alternating order (medians shown),
so neither sees the other's allocator state.

- memory: what training adds over the loaded model: the peak during the steps minus the
  resident memory when training starts (model built and loaded, no gradients, no optimizer
  state yet, which full tuning's AdamW then allocates). On CPU the child resets its RSS
  high-water mark (``/proc/self/clear_refs``) at that point and reads ``VmHWM`` at the end
  (Linux); on CUDA ``torch.cuda.max_memory_allocated`` after a reset. The whole process's peak
  (imports, data, model included) is shown beside it.
- step time: wall and CPU seconds per optimizer step from the end of step W (``--warmup-steps``)
  to the end of step N (``--steps``).
- checkpoint: the size of the ``.ckpt`` each mode writes at the end (LoRA: adapters and their
  optimizer state only).

    .venv/bin/python benchmarks/lora_vs_full.py [--steps 30 --rank 8 --repeats 2 --out table.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_assets import (  # benchmarks/ is on sys.path
    add_asset_arguments,
    add_run_arguments,
    build_assets,
    quiet_trainer,
    run_benchmark,
    run_worker,
)

REPO = Path(__file__).resolve().parents[1]
MODES = ("full", "lora")
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (N)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="in both modes, as the LoRA recipe does (--no-gradient-checkpointing: off)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_asset_arguments(parser, 20, "pretraining steps of the cached base (only shapes matter)")
    add_run_arguments(
        parser,
        seed=42,
        seed_help="seed of the assets, of the data order and of both modes' training",
        out_help="also write the table (.md) or results (.json)",
        threads_help="torch threads (1: steadier on a shared machine)",
        worker=dict(choices=MODES),
    )
    parser.add_argument("--assets", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.warmup_steps < args.steps:
        parser.error("--warmup-steps must be at least 1 and less than --steps")
    return args


# --- one mode, in its own process ----------------------------------------------------------------
def rss_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in bytes (Linux)."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in lines
        if line.startswith(("VmRSS:", "VmHWM:"))
    }


def worker(args: argparse.Namespace) -> dict:
    import lightning as L
    import torch

    from lightning_xllama.data import CoITDataModule
    from lightning_xllama.demo.layout import DemoLayout
    from lightning_xllama.training.module import XLlamaModule

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    layout = DemoLayout(args.assets)
    data = layout.data
    model_path = str(layout.base_model)
    lora = dict(lora_rank=args.rank, lora_alpha=2.0 * args.rank, lora_dropout=0.0)

    class Meter(L.Callback):
        def on_train_start(self, trainer, pl_module):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.baseline = torch.cuda.memory_allocated()
            else:
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
                self.baseline = rss_status()["VmRSS"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if cuda:
                torch.cuda.synchronize()
            if trainer.global_step == args.warmup_steps:
                self.start, self.start_cpu = time.perf_counter(), time.process_time()
            self.end, self.end_cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, trainer, pl_module):
            self.peak = torch.cuda.max_memory_allocated() if cuda else rss_status()["VmHWM"]

    L.seed_everything(args.seed)
    meter = Meter()
    module = XLlamaModule(
        model_path,
        learning_rate=args.learning_rate,
        gradient_checkpointing=args.gradient_checkpointing,
        **(lora if args.worker == "lora" else {}),
    )
    trainer = quiet_trainer(
        accelerator="gpu" if cuda else "cpu",
        max_steps=args.steps,
        gradient_clip_val=1.0,
        precision="bf16-mixed" if cuda else "32-true",
        callbacks=[meter],
    )
    datamodule = CoITDataModule(
        language="syn_far",
        english_instructions=str(data.instructions("en")),
        translated_instructions=str(data.instructions("syn_far")),
        parallel=str(data.parallel("syn_far")),
        tokenizer=model_path,
        batch_size=args.batch_size,
        max_length=256,
        seed=args.seed,
    )
    trainer.fit(module, datamodule=datamodule)
    timed = args.steps - args.warmup_steps
    with tempfile.TemporaryDirectory() as folder:
        ckpt = Path(folder) / "last.ckpt"
        trainer.save_checkpoint(ckpt)
        ckpt_bytes = ckpt.stat().st_size
    trainable, total = module.parameter_counts
    return {
        "mode": args.worker,
        "device": args.device,
        "trainable": trainable,
        "total": total,
        "train_memory_mib": (meter.peak - meter.baseline) / MIB,
        "process_peak_mib": (torch.cuda.max_memory_allocated() if cuda else rss_status()["VmHWM"])
        / MIB,
        "step_s": (meter.end - meter.start) / timed,
        "step_cpu_s": (meter.end_cpu - meter.start_cpu) / timed,
        "checkpoint_mib": ckpt_bytes / MIB,
        "final_loss": float(trainer.callback_metrics["train/loss"]),
        "threads": torch.get_num_threads(),
    }


# --- the table --------------------------------------------------------------------------------
COLUMNS = [
    ("trainable parameters", "trainable", "{:,.0f}"),
    ("training memory over the loaded model (MiB)", "train_memory_mib", "{:,.1f}"),
    ("process peak (MiB)", "process_peak_mib", "{:,.0f}"),
    ("wall s / step", "step_s", "{:.3f}"),
    ("CPU s / step", "step_cpu_s", "{:.3f}"),
    ("checkpoint (MiB)", "checkpoint_mib", "{:,.2f}"),
    ("final loss", "final_loss", "{:.4f}"),
]


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for _, key, _ in COLUMNS} | {
        "total": runs[0]["total"]
    }


def table(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    full, lora = medians(results["full"]), medians(results["lora"])
    first = results["full"][0]
    memory = (
        "torch.cuda.max_memory_allocated" if args.device == "cuda" else "VmHWM after clear_refs"
    )
    lines = [
        f"LoRA (rank {args.rank}, all decoder-layer projections) vs full tuning: "
        f"{full['total']:,}-parameter LLaMA (hidden {args.hidden_size}, {args.layers} layers), "
        f"batch {args.batch_size}, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}, {args.steps} steps ({args.steps - args.warmup_steps} timed), "
        f"{args.device} ({first['threads']} threads), medians of {args.repeats} runs each; "
        f"memory: {memory}",
        "",
        "| | " + " | ".join(name for name, _, _ in COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for label, row in (("full", full), (f"LoRA r={args.rank}", lora)):
        lines.append(
            f"| {label} | " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |"
        )
    lines.append(
        "| LoRA / full | "
        + " | ".join(
            f"{lora[key] / full[key]:.3f}" if key != "final_loss" else "" for _, key, _ in COLUMNS
        )
        + " |"
    )
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> tuple[str, object]:
    """Each mode's runs in their own processes, alternating; the table and the results."""
    assets = build_assets(args)
    settings = {
        "--steps": args.steps,
        "--warmup-steps": args.warmup_steps,
        "--batch-size": args.batch_size,
        "--rank": args.rank,
        "--learning-rate": args.learning_rate,
        "--threads": args.threads,
        "--device": args.device,
        "--gradient-checkpointing"
        if args.gradient_checkpointing
        else "--no-gradient-checkpointing": None,
        "--seed": args.seed,
        "--assets": assets,
    }
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            line = (
                f"{mode} #{repeat + 1}: "
                + "{step_s:.3f} s/step, training memory {train_memory_mib:,.1f} MiB"
            )
            options = {**settings, "--worker": mode}
            results[mode].append(run_worker(__file__, options, mode, lambda r: line.format(**r)))
    return table(results, args), results


if __name__ == "__main__":
    run_benchmark(sys.argv[1:], parse_args, worker, measure)
