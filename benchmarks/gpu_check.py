"""One prepared check of the GPU training path: PASS/FAIL per check, a summary, non-zero exit on failure.

For a person with one GPU (279-290 s on an H200 with ``--jobs 6 --steps 20`` and six throughput
variants, measured: benchmarks/README.md), offline, from a source checkout on ``PYTHONPATH``
with torch, lightning and transformers installed:

(a) assets: the demo's corpora and tokenizer (``lightning_xllama.demo.prepare.prepare_demo``, small
    settings, one target language), then a randomly initialised LLaMA saved as a Hugging Face
    folder (safetensors, fp16) whose ``config.json`` has a real LLaMA-7B folder's fields
    (``use_cache`` true, ``rms_norm_eps`` 1e-6, rope theta 10000, 2048 positions, bos 1 / eos 2 /
    pad 0) at a smaller shape (hidden 1024, 8 layers, 8 heads of 128) and the demo tokenizer's
    vocabulary, with the tokenizer files beside it;
(b) training through the real CLI (``python -m lightning_xllama fit --config configs/demo.yaml``
    with overrides: that model, GPU, bf16-mixed, ``gradient_clip_val`` 1.0, ``--steps`` steps,
    no validation, no callbacks, a CSV logger every step) on the single-device path,
    ``DecoderFSDPStrategy``, ``DecoderFSDP2Strategy``, and the recipes' packing line
    (``--data.init_args.batching pack --model.init_args.attn_implementation flex_attention``, the
    module's default chunked loss) under the recipes' strategy (FSDP1), and LoRA (rank 8 through
    peft, needs the ``lora`` extra) on the single-device path and under ``DecoderFSDP2Strategy``
    (adapters sharded as DTensors). Each passes when
    the process exits 0, the logged ``train/loss`` falls (the mean of the last 5 steps below the
    mean of the first 3) and ``train/grad_norm`` is logged;
(c) the throughput table: ``gpu_throughput.py --shapes 1b --strategies fsdp2`` with the padded
    baseline, packed + flex and packed + flex + chunked loss, ``--bench-steps`` steps each, at
    8192 example tokens a micro-batch on a GPU of 100 GiB or more (4096 below), where the padded
    baseline fits without checkpointing. Each variant passes when it ran (no OOM, no error).

    python benchmarks/gpu_check.py              # (a), (b), (c)
    python benchmarks/gpu_check.py --full       # only the whole default table (1b and 3b, both strategies; long)
    python benchmarks/gpu_check.py --dry-run    # the same checks on CPU with a tiny model (minutes)
    python benchmarks/gpu_check.py --jobs 6 --bench-strategies fsdp2 fsdp   # training checks at once; both strategies' table

``--dry-run`` runs everything on CPU: a tiny model, fp32, ``DecoderFSDP2Strategy`` with one
process (``DecoderFSDPStrategy`` is skipped: FSDP1 needs CUDA), and ``sdpa_varlen`` in place of
``flex_attention`` (FlexAttention has no CPU backward). Logs of every run are kept under
``--work-dir`` (``runs/<check>/output.log`` and ``metrics.csv``, ``throughput.json``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import llama_config, save_random_llama  # noqa: E402

from lightning_xllama.demo.layout import DataLayout, DemoLayout  # noqa: E402

CHECK_SHAPE = dict(
    hidden_size=1024, intermediate_size=2752, num_hidden_layers=8, num_attention_heads=8
)
DRY_SHAPE = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4)
DEMO_SETTINGS = (
    dict(  # small: the corpora and tokenizer only matter here, the pretrained model does not
        targets=["syn_far"],
        pretraining=2000,
        instructions=400,
        parallel=800,
        vocab_size=2048,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        pretrain_steps=1,
    )
)
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
THROUGHPUT_VARIANTS = ["padded", "packed-flex", "packed-flex-chunked"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny model, FSDP2 with 1 process, sdpa_varlen"
    )
    parser.add_argument(
        "--full", action="store_true", help="run only the whole throughput table (no time bound)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "artifacts" / "gpu_check",
        help="assets, logs and results (reused: the demo assets are cached by their settings)",
    )
    parser.add_argument(
        "--steps", type=int, help="optimizer steps of each CLI run (default 30; dry run 12)"
    )
    parser.add_argument(
        "--bench-steps", type=int, default=8, help="steps of each throughput variant"
    )
    parser.add_argument(
        "--bench-warmup", type=int, default=3, help="steps left out of the throughput timing"
    )
    parser.add_argument(
        "--bench-tokens",
        type=int,
        help="example tokens per micro-batch of the throughput check (default: 8192 on a GPU of "
        "100 GiB or more, else 4096, so the padded baseline fits without checkpointing)",
    )
    parser.add_argument(
        "--bench-strategies",
        nargs="+",
        choices=["fsdp", "fsdp2"],
        default=["fsdp2"],
        help="strategies of the throughput check (fsdp: DecoderFSDPStrategy, fsdp2: DecoderFSDP2Strategy)",
    )
    parser.add_argument(
        "--bench-variants",
        nargs="+",
        default=THROUGHPUT_VARIANTS,
        help="variants of the throughput check (gpu_throughput.py's names; default: %(default)s)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="CLI training checks run at once (they share the GPU; their pass/fail does not "
        "depend on speed, the throughput check always runs alone)",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=5e-4, help="of the CLI runs (a random model)"
    )
    parser.add_argument(
        "--run-timeout", type=float, default=300, help="seconds one CLI run may take (dry run: x4)"
    )
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 12 if args.dry_run else 30
    if args.steps < 8:
        parser.error(
            "--steps must be at least 8 (the loss check compares the first 3 and the last 5 steps)"
        )
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.dry_run:
        args.run_timeout *= 4
    return args


class Report:
    """PASS / FAIL / SKIP lines as they happen, and the summary."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, float]] = []

    def add(self, name: str, outcome: str, detail: str, seconds: float = 0.0) -> None:
        self.rows.append((name, outcome, detail, seconds))
        print(f"{outcome}: {name} ({seconds:.0f} s): {detail}", flush=True)

    def summary(self, total: float) -> int:
        counts = {k: sum(r[1] == k for r in self.rows) for k in ("PASS", "FAIL", "SKIP")}
        print("\n== summary ==")
        for name, outcome, detail, seconds in self.rows:
            print(f"{outcome:4}  {name:48} {seconds:6.0f} s  {detail}")
        print(
            f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in {total:.0f} s"
        )
        return 1 if counts["FAIL"] or not counts["PASS"] else 0


def environment(dry_run: bool) -> tuple[str, float]:
    """The device and versions in words, and the GPU's memory in GiB (0 on CPU)."""
    import lightning
    import torch
    import transformers

    device, memory = "cpu (dry run)", 0.0
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        memory = props.total_memory / 2**30
        device = f"{props.name}, {memory:.0f} GiB, CUDA {torch.version.cuda}"
    elif not dry_run:
        raise SystemExit(
            "FAIL: no CUDA device (torch.cuda.is_available() is False); use --dry-run on a CPU"
        )
    return (
        f"device: {device}\nversions: python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {lightning.__version__}, transformers {transformers.__version__}"
    ), memory


# --- (a) assets -------------------------------------------------------------------------------
def build_assets(work: Path, dry_run: bool) -> tuple[Path, Path, int]:
    """The demo corpora + tokenizer, and the random LLaMA-7B-configured model folder."""
    from lightning_xllama.demo.prepare import prepare_demo
    from lightning_xllama.runtime.hf_loading import load_tokenizer

    demo = work / "demo"
    prepare_demo(output_dir=str(demo), **DEMO_SETTINGS)
    tokenizer = load_tokenizer(str(DemoLayout(demo).base_model))
    shape = DRY_SHAPE if dry_run else CHECK_SHAPE
    model_dir = work / ("model-tiny" if dry_run else "model")
    if model_dir.exists():
        shutil.rmtree(model_dir)
    config = llama_config(
        shape,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    save_random_llama(model_dir, config, seed=0, dtype="float16", device="cpu")
    for name in TOKENIZER_FILES:
        if (DemoLayout(demo).base_model / name).is_file():
            shutil.copy2(DemoLayout(demo).base_model / name, model_dir / name)
    return demo, model_dir, len(tokenizer)


def check_model_folder(model_dir: Path, vocab: int) -> str:
    """What ``from_pretrained`` sees: the LLaMA-7B fields, safetensors, the tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    problems = []
    if not config.use_cache or config.rms_norm_eps != 1e-6 or config.model_type != "llama":
        problems.append(
            f"config fields differ from LLaMA-7B's: use_cache {config.use_cache}, "
            f"rms_norm_eps {config.rms_norm_eps}, model_type {config.model_type}"
        )
    if not list(model_dir.glob("*.safetensors")):
        problems.append("no safetensors weights")
    if (
        len(AutoTokenizer.from_pretrained(model_dir)) != config.vocab_size
        or config.vocab_size != vocab
    ):
        problems.append("tokenizer and vocab_size differ")
    if problems:
        raise ValueError("; ".join(problems))
    return (
        f"hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}, "
        f"use_cache {config.use_cache}, rms_norm_eps {config.rms_norm_eps}"
    )


# --- (b) training through the CLI -------------------------------------------------------------
def training_runs(dry_run: bool) -> list[tuple[str, list[str], str | None]]:
    """(name, CLI overrides, reason to skip or None) of each training check."""
    fsdp1 = ["--trainer.strategy.class_path", "lightning_xllama.strategies.DecoderFSDPStrategy"]
    fsdp2 = ["--trainer.strategy.class_path", "lightning_xllama.strategies.DecoderFSDP2Strategy"]
    if dry_run:
        fsdp2 += ["--trainer.strategy.param_dtype", "fp32"]
    # the recipes' packing line (configs/x-llama-7b.yaml): one row per micro-batch, flex attention,
    # the module's default loss (chunked)
    packed = [
        "--data.init_args.batching",
        "pack",
        "--model.init_args.attn_implementation",
        "sdpa_varlen" if dry_run else "flex_attention",
    ]
    packed += ["--data.init_args.pad_to_multiple_of", "64"]  # fewer row widths: fewer recompiles
    no_fsdp1 = "DecoderFSDPStrategy (FSDP1) needs CUDA" if dry_run else None
    # LoRA (configs/x-llama-7b/zh-lora.yaml's set-up, smaller rank); adapters start at zero, so a
    # higher rate than full tuning's
    lora = ["--model.init_args.lora_rank", "8", "--model.init_args.lora_alpha", "16"]
    lora += ["--model.init_args.learning_rate", "2e-3"]
    no_peft = None if importlib.util.find_spec("peft") else "peft is not installed (lora extra)"
    return [
        ("fit single device", [], None),
        ("fit DecoderFSDPStrategy", fsdp1, no_fsdp1),
        ("fit DecoderFSDP2Strategy", fsdp2, None),
        # the 7B recipes' strategy: FSDP1 (FSDP2 on CPU, where FSDP1 cannot run)
        (
            "fit packed + " + ("sdpa_varlen" if dry_run else "flex_attention"),
            (fsdp2 if dry_run else fsdp1) + packed,
            None,
        ),
        ("fit LoRA single device", lora, no_peft),
        ("fit LoRA DecoderFSDP2Strategy", fsdp2 + lora, no_peft),
    ]


def fit_command(
    name: str, extra: list[str], demo: Path, model_dir: Path, logs: Path, args
) -> list[str]:
    data = demo / "data"
    return [
        sys.executable,
        "-m",
        "lightning_xllama",
        "fit",
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        "--model.init_args.model_name_or_path",
        str(model_dir),
        "--model.init_args.learning_rate",
        str(args.learning_rate),
        "--data.init_args.english_instructions",
        str(DataLayout(data).instructions("en")),
        "--data.init_args.translated_instructions",
        str(DataLayout(data).instructions("syn_far")),
        "--data.init_args.parallel",
        str(DataLayout(data).parallel("syn_far")),
        "--data.init_args.num_workers",
        "0" if args.dry_run else "2",
        "--trainer.accelerator",
        "cpu" if args.dry_run else "gpu",
        "--trainer.devices",
        "1",
        "--trainer.precision",
        "32-true" if args.dry_run else "bf16-mixed",
        "--trainer.gradient_clip_val",
        "1.0",
        "--trainer.max_steps",
        str(args.steps),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.callbacks",
        "null",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.default_root_dir",
        str(logs),
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(logs),
        "--trainer.logger.name",
        name,
        "--trainer.logger.version",
        "0",
        *extra,
    ]


def read_metrics(path: Path) -> tuple[list[float], list[float]]:
    """``train/loss`` per step (in step order) and the logged ``train/grad_norm`` values."""
    losses: dict[int, float] = {}
    norms: list[float] = []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
            if row.get("train/grad_norm"):
                norms.append(float(row["train/grad_norm"]))
    return [losses[k] for k in sorted(losses)], norms


def judge_training(returncode: int, metrics: Path, steps: int) -> tuple[bool, str]:
    if returncode != 0:
        return False, f"exit code {returncode}"
    if not metrics.is_file():
        return False, f"no {metrics}"
    losses, norms = read_metrics(metrics)
    if len(losses) < min(steps, 8):
        return False, f"train/loss logged at {len(losses)} steps, expected {steps}"
    if not all(math.isfinite(x) for x in losses):
        return False, f"non-finite train/loss: {losses}"
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    detail = f"{len(losses)} steps, loss {first:.3f} (first 3) -> {last:.3f} (last 5)"
    if not norms:
        return False, detail + "; train/grad_norm not logged"
    if not all(math.isfinite(x) for x in norms):
        return False, detail + f"; non-finite train/grad_norm {norms}"
    detail += f", grad_norm {min(norms):.2f}-{max(norms):.2f} ({len(norms)} logged)"
    if not last < first:
        return False, detail + "; the loss did not fall"
    return True, detail


def run_training(report: Report, demo: Path, model_dir: Path, work: Path, args, env: dict) -> None:
    """Each training check as its own ``fit`` process, ``args.jobs`` at a time."""
    logs = work / "runs"
    pending = []
    for label, extra, skip in training_runs(args.dry_run):
        if skip:
            report.add(label, "SKIP", skip)
        else:
            pending.append((label, extra))
    running: dict[str, tuple[subprocess.Popen, float, Path, str]] = {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                label, extra = pending.pop(0)
                running[label] = start_training(label, extra, demo, model_dir, logs, args, env)
            time.sleep(0.5)
            for label, (process, started, log_file, name) in list(running.items()):
                seconds = time.perf_counter() - started
                if process.poll() is None and seconds <= args.run_timeout:
                    continue
                del running[label]
                if process.returncode is None:
                    process.kill()
                    process.wait()
                    ok, detail = False, f"timed out after {args.run_timeout:.0f} s"
                else:
                    ok, detail = judge_training(
                        process.returncode, logs / name / "version_0" / "metrics.csv", args.steps
                    )
                if not ok:
                    tail = log_file.read_text(errors="replace").splitlines()[-25:]
                    print("\n".join(f"    | {line}" for line in tail), flush=True)
                    detail += f" (log: {log_file})"
                report.add(label, "PASS" if ok else "FAIL", detail, seconds)
    finally:  # an error or Ctrl-C here leaves no training process on the GPU
        for process, *_ in running.values():
            process.kill()
            process.wait()


def start_training(
    label: str, extra: list[str], demo: Path, model_dir: Path, logs: Path, args, env
):
    """One training check's ``fit`` process, its output in ``output.log``, on a free port of its own
    (Lightning would pick one, but two processes started together can pick the same)."""
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    name = label.replace(" ", "_").replace("+", "").replace("__", "_")
    shutil.rmtree(logs / name, ignore_errors=True)
    (logs / name).mkdir(parents=True, exist_ok=True)
    log_file = logs / name / "output.log"
    command = fit_command(name, extra, demo, model_dir, logs, args)
    with log_file.open("w") as out:
        out.write(" ".join(command) + "\n\n")
        out.flush()
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "MASTER_PORT": str(find_free_network_port())},
            cwd=REPO,
        )
    return process, time.perf_counter(), log_file, name


# --- (c) throughput ---------------------------------------------------------------------------
def run_throughput(report: Report, work: Path, args, env: dict, memory_gib: float) -> None:
    out = work / "throughput.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_throughput.py"),
        "--out",
        str(out),
        "--model-dir",
        str(work / "bench_models"),
    ]
    if args.dry_run:
        command += ["--dry-run"]
    if args.full:
        command += ["--run-timeout", "1800"]
    else:
        tokens = args.bench_tokens or (8192 if memory_gib >= 100 else 4096)
        if not args.dry_run:
            command += ["--tokens-per-batch", str(tokens)]
        command += [
            "--shapes",
            "1b",
            "--strategies",
            *args.bench_strategies,
            "--variants",
            *args.bench_variants,
            "--steps",
            str(args.bench_steps),
            "--warmup-steps",
            str(args.bench_warmup),
            "--run-timeout",
            "300",
        ]
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    process = subprocess.run(command, env=env, cwd=REPO)
    seconds = time.perf_counter() - started
    if not out.is_file():
        report.add(
            "throughput table", "FAIL", f"exit code {process.returncode}, no results", seconds
        )
        return
    results = json.loads(out.read_text())
    for r in results:
        name = f"throughput {r['shape']} {r['strategy']} {r['variant']}"
        if r.get("skipped"):
            report.add(name, "SKIP", r["skipped"])
        elif r.get("error"):
            report.add(
                name,
                "FAIL",
                r["error"].strip().splitlines()[-1] if r["error"].strip() else "failed",
            )
        elif r.get("oom"):
            report.add(name, "FAIL", "out of memory")
        else:
            report.add(
                name,
                "PASS",
                f"{r['tokens'] / r['seconds']:,.0f} tokens/s, final loss {r['final_loss']:.3f}"
                + (f", peak {r['peak_memory_gb']:.1f} GB" if r.get("peak_memory_gb") else ""),
            )
    report.add(
        "throughput table",
        "PASS" if process.returncode == 0 else "FAIL",
        f"exit code {process.returncode}; results in {out}",
        seconds,
    )


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    report = Report()
    text, memory_gib = environment(args.dry_run)
    print(text, flush=True)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    if not args.full:
        t = time.perf_counter()
        try:
            demo, model_dir, vocab = build_assets(work, args.dry_run)
            detail = check_model_folder(model_dir, vocab)
        except Exception as err:  # noqa: BLE001 - reported, and nothing after it can run
            report.add("assets", "FAIL", f"{type(err).__name__}: {err}", time.perf_counter() - t)
            sys.exit(report.summary(time.perf_counter() - started))
        report.add("assets", "PASS", f"{model_dir}: {detail}", time.perf_counter() - t)
        run_training(report, demo, model_dir, work, args, env)
    run_throughput(report, work, args, env, memory_gib)
    sys.exit(report.summary(time.perf_counter() - started))


if __name__ == "__main__":
    main()
