"""Training throughput: this project's Lightning path against a plain Hugging Face ``Trainer``.

Both paths train the same tiny pretrained LLaMA (built once with ``prepare_demo`` and cached
under ``artifacts/bench/``) on the same encoded CoIT examples in the same order: the HF
``Trainer`` gets the project's epoch-0 examples (``CoITDataModule.train_examples``) as a plain
list, read in order, padded by the same ``PadCollator``. Batch size, optimizer steps, peak
learning rate, warm-up and cosine schedule, gradient clipping (HF's default
``max_grad_norm=1.0``, so Lightning gets ``gradient_clip_val=1.0``), seeds and torch threads
are the same. Each side keeps its own defaults otherwise (the HF ``Trainer`` picks its
optimizer, the module builds its own AdamW); the output says which optimizer each one used.

The project's loader reads, tokenises and collates lazily in the training process
(``num_workers=0``), so that work is inside its timed window, while the HF path gets the
examples already tokenised, as HF users usually prepare them (``datasets.map`` beforehand). The
Lightning run therefore also times its loader alone over the same batches, to show how much of
any gap is data.

Timing runs from the end of optimizer step W (``--warmup-steps``) to the end of step N
(``--steps``), so the first steps (allocator growth, lazy initialisation) are left out of both.
Tokens are counted from the batches each path actually trained on in that window: response
tokens are labels != -100 after the one-token shift, all tokens are the non-padding ones. The
CPU seconds of the window (``time.process_time``, all threads) are shown beside the wall time:
on a shared machine they move less than the wall time when other processes take the cores.

Every run is its own subprocess, so that the peak RSS reported is that run's own (imports and
data set-up included, the same for both) and neither run inherits the other's warm caches or
allocator state. The child reads its peak from ``VmHWM`` in ``/proc/self/status`` (Linux):
``ru_maxrss`` (and the parent's ``RUSAGE_CHILDREN``) would include the parent's own peak, which
Linux carries across fork and exec, and the parent is the process that builds the assets. With
``--repeats R`` each path runs R times, in alternating order; the table shows medians and the
spread of the wall time.

    .venv/bin/python benchmarks/train_throughput.py [--steps 60] [--repeats 3] [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from bench_assets import (  # benchmarks/ is on sys.path as the script folder
    add_asset_arguments,
    add_run_arguments,
    build_assets,
    quiet_trainer,
    report,
    run_worker,
)

from lightning_xllama.demo.layout import DataLayout, DemoLayout

REPO = Path(__file__).resolve().parents[1]
LANGUAGE = "syn_far"
# Smaller corpora than the demo's: one epoch still holds about 3,800 training examples, enough
# for 200+ steps of 16, and the data set-up of each subprocess stays a few seconds.
# As configs/demo.yaml: the realistic CPU set-up.
STREAM_WEIGHTS = {"english": 1.0, "translated": 1.0, "parallel": 2.0}
MAX_LENGTH = 256
WARMUP_RATIO = 0.03
MAX_GRAD_NORM = 1.0
PATHS = {"lightning": "lightning_xllama (Lightning)", "hf": "HF transformers.Trainer"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run (N)")
    parser.add_argument(
        "--warmup-steps", type=int, default=10, help="steps left out of the timing (W)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="examples per optimizer step")
    add_asset_arguments(
        parser, 20, "pretraining steps of the cached base model (only its shapes matter)"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak learning rate (as configs/demo.yaml)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each path, in alternating order; medians are shown",
    )
    add_run_arguments(
        parser,
        seed=42,
        seed_help="seed of the data order and of both trainers",
        out_help="also write the table: .json (with every run) or markdown",
        threads_help="torch intra-op threads of every run; 1 by default because on a shared "
        "machine several threads spin-wait for a busy core and the timings swing by 2-5x",
        worker=dict(choices=sorted(PATHS)),
    )
    parser.add_argument("--assets", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.warmup_steps < args.steps:
        parser.error(
            "--warmup-steps must be at least 1 (timing starts at the end of a step) and less than --steps"
        )
    return args


# --- shared by both paths (runs inside the subprocess) ----------------------------------------
class Meter:
    """What the timed steps processed: from the end of optimizer step W to the end of step N."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps = warmup_steps
        self.start = self.end = self.start_cpu = self.end_cpu = 0.0
        self.examples = self.response_tokens = self.all_tokens = 0

    def batch(self, completed_steps: int, batch: dict) -> None:
        if completed_steps >= self.warmup_steps:
            self.examples += len(batch["input_ids"])
            self.response_tokens += int((batch["labels"][:, 1:] != -100).sum())
            self.all_tokens += int(batch["attention_mask"].sum())

    def step_end(self, completed_steps: int) -> None:
        if completed_steps == self.warmup_steps:
            self.start, self.start_cpu = time.perf_counter(), time.process_time()
        elif completed_steps > self.warmup_steps:
            self.end, self.end_cpu = time.perf_counter(), time.process_time()

    def result(self, final_loss: float, optimizer) -> dict:
        import torch

        flags = (
            f"fused={optimizer.defaults.get('fused')}, foreach={optimizer.defaults.get('foreach')}"
        )
        return {
            "wall_s": self.end - self.start,
            "cpu_s": self.end_cpu - self.start_cpu,
            "examples": self.examples,
            "response_tokens": self.response_tokens,
            "all_tokens": self.all_tokens,
            "final_loss": final_loss,
            "optimizer": f"{type(optimizer).__name__}({flags})",
            "threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb(),
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory, not counting what it inherited at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS is measured on Linux only")


def make_datamodule(args: argparse.Namespace):
    from lightning_xllama.data import CoITDataModule

    data = args.assets / "data"
    return CoITDataModule(
        language=LANGUAGE,
        english_instructions=str(DataLayout(data).instructions("en")),
        translated_instructions=str(DataLayout(data).instructions(LANGUAGE)),
        parallel=str(DataLayout(data).parallel(LANGUAGE)),
        weights=STREAM_WEIGHTS,
        max_length=MAX_LENGTH,
        batch_size=args.batch_size,
        seed=args.seed,
        tokenizer=str(DemoLayout(args.assets).base_model),
        cache_dir=str(args.assets / "cache"),
    )


def first_epoch_examples(datamodule, args: argparse.Namespace) -> list[dict]:
    """The examples of the N steps in the project's training order (epoch 0 of its data plan).

    A run longer than one epoch is refused: the baseline's plain list could not follow the
    project's order into the next epoch.
    """
    needed = args.steps * args.batch_size
    examples = datamodule.train_examples(needed)
    if len(examples) < needed:
        sys.exit(
            f"--steps x --batch-size = {needed} examples, more than one epoch ({len(examples)})"
        )
    return examples


def run_lightning(args: argparse.Namespace) -> dict:
    import lightning as L

    from lightning_xllama.training.module import XLlamaModule

    meter = Meter(args.warmup_steps)

    class Timing(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            meter.batch(trainer.global_step, batch)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            meter.step_end(trainer.global_step)

    datamodule = make_datamodule(args)
    first_epoch_examples(datamodule, args)  # the baseline's check, made before any training
    loader_s = time_loader(datamodule, args)
    L.seed_everything(args.seed, verbose=False)
    module = XLlamaModule(
        str(DemoLayout(args.assets).base_model),
        learning_rate=args.learning_rate,
        warmup_ratio=WARMUP_RATIO,
    )
    trainer = quiet_trainer(
        max_steps=args.steps, gradient_clip_val=MAX_GRAD_NORM, callbacks=[Timing()]
    )
    trainer.fit(module, datamodule=datamodule)
    return {
        **meter.result(float(trainer.callback_metrics["train/loss"]), trainer.optimizers[0]),
        "loader_s": loader_s,
    }


def time_loader(datamodule, args: argparse.Namespace) -> float:
    """Seconds the project's loader alone takes to read, tokenise and collate the timed batches."""
    batches = iter(datamodule.train_dataloader())
    for _ in range(args.warmup_steps):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps - args.warmup_steps):
        next(batches)
    return time.perf_counter() - start


def run_hf(args: argparse.Namespace) -> dict:
    from torch.utils.data import SequentialSampler
    from transformers import (
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from lightning_xllama.data.collate import PadCollator

    meter = Meter(args.warmup_steps)
    last_loss = []

    class OrderedTrainer(Trainer):
        """Reads the list in order (``Trainer`` would shuffle it) and shows the meter each batch."""

        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(
                train_dataset if train_dataset is not None else self.train_dataset
            )

        def training_step(self, model, inputs, num_items_in_batch=None):
            meter.batch(self.state.global_step, inputs)
            loss = super().training_step(model, inputs, num_items_in_batch)
            last_loss[:] = [loss]
            return loss

    class Timing(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            meter.step_end(state.global_step)

    datamodule = make_datamodule(args)
    examples = first_epoch_examples(datamodule, args)

    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(
        str(DemoLayout(args.assets).base_model), attn_implementation="sdpa"
    )
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.learning_rate,
            lr_scheduler_type="cosine",
            warmup_ratio=WARMUP_RATIO,
            weight_decay=0.0,
            max_grad_norm=MAX_GRAD_NORM,
            logging_steps=args.steps,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=args.seed,
        )
        trainer = OrderedTrainer(
            model=model,
            args=training_args,
            train_dataset=examples,
            data_collator=PadCollator(datamodule.tokenizer.pad_token_id),
            callbacks=[Timing()],
        )
        trainer.train()
    return meter.result(float(last_loss[0]), trainer.optimizer.optimizer)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = (run_lightning if args.worker == "lightning" else run_hf)(args)
    report(result)


# --- the orchestrating process --------------------------------------------------------------
def run_subprocess(path: str, assets: Path, args: argparse.Namespace) -> dict:
    """One path's run in a fresh process, with this run's options."""
    options = {
        f"--{name.replace('_', '-')}": value
        for name, value in vars(args).items()
        if value is not None and name not in ("worker", "assets", "out")
    }
    return run_worker(__file__, {**options, "--worker": path, "--assets": assets}, path, cwd=REPO)


def summarise(runs: list[dict], timed_steps: int) -> dict:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    walls = [run["wall_s"] for run in runs]
    return {
        "timed_steps": timed_steps,
        "wall_s": median("wall_s"),
        "wall_s_min": min(walls),
        "wall_s_max": max(walls),
        "cpu_s": median("cpu_s"),
        "examples_per_s": statistics.median(r["examples"] / r["wall_s"] for r in runs),
        "response_tokens_per_s": statistics.median(
            r["response_tokens"] / r["wall_s"] for r in runs
        ),
        "all_tokens_per_s": statistics.median(r["all_tokens"] / r["wall_s"] for r in runs),
        "peak_rss_mb": median("peak_rss_mb"),
        "final_loss": median("final_loss"),
        "response_tokens": median("response_tokens"),
        "optimizer": runs[0]["optimizer"],
        "threads": runs[0]["threads"],
        **({"loader_s": median("loader_s")} if "loader_s" in runs[0] else {}),
    }


def markdown_table(summary: dict[str, dict]) -> str:
    """The ratio is of response tokens/s (wall time); in brackets, the same from CPU seconds."""
    baseline, baseline_cpu = summary["hf"]["response_tokens_per_s"], summary["hf"]["cpu_s"]
    lines = [
        "| path | timed steps | wall s (median, min-max) | CPU s | examples/s | response tokens/s | all tokens/s "
        "| peak RSS MB | final loss | response tokens | ratio vs HF Trainer (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path, s in summary.items():
        lines.append(
            f"| {PATHS[path]} | {s['timed_steps']} | {s['wall_s']:.2f} ({s['wall_s_min']:.2f}-{s['wall_s_max']:.2f}) "
            f"| {s['cpu_s']:.1f} | {s['examples_per_s']:.1f} | {s['response_tokens_per_s']:.0f} "
            f"| {s['all_tokens_per_s']:.0f} "
            f"| {s['peak_rss_mb']:.0f} | {s['final_loss']:.4f} | {s['response_tokens']:.0f} "
            f"| {s['response_tokens_per_s'] / baseline:.2f} ({baseline_cpu / s['cpu_s']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    assets = build_assets(args)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {path: [] for path in PATHS}
    for repeat in range(args.repeats):
        order = list(PATHS) if repeat % 2 == 0 else list(PATHS)[::-1]
        for path in order:
            started = time.perf_counter()
            runs[path].append(run_subprocess(path, assets, args))
            print(
                f"repeat {repeat + 1}/{args.repeats} {path}: {runs[path][-1]['wall_s']:.2f} s timed "
                f"({time.perf_counter() - started:.0f} s with start-up)",
                flush=True,
            )
    summary = {
        path: summarise(path_runs, args.steps - args.warmup_steps)
        for path, path_runs in runs.items()
    }
    table = markdown_table(summary)
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("torch", "lightning", "transformers", "accelerate")
    )
    header = (
        f"- tiny LLaMA hidden {args.hidden_size}, {args.layers} layers; batch {args.batch_size}; "
        f"steps {args.steps}, timed {args.warmup_steps + 1}-{args.steps}; repeats {args.repeats}; "
        f"torch threads {summary['lightning']['threads']}; {versions}\n"
        f"- 1-minute load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores (other processes slow both paths and widen the spread)\n"
        + "".join(f"- optimizer of {PATHS[p]}: {s['optimizer']}\n" for p, s in summary.items())
        + f"- the project's loader alone (read, tokenise, collate the timed batches, no training) took "
        f"{summary['lightning']['loader_s']:.2f} s of its wall time; the HF path gets the examples tokenised\n"
    )
    print("\n" + header + "\n" + table)
    if summary["lightning"]["response_tokens"] != summary["hf"]["response_tokens"]:
        print("WARNING: the two paths trained on different numbers of response tokens")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            args.out.write_text(
                json.dumps(
                    {
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "summary": summary,
                        "runs": runs,
                    },
                    indent=1,
                )
            )
        else:
            args.out.write_text(header + "\n" + table + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
