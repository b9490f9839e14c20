"""Peak memory of the causal-LM loss: full logits + ``cross_entropy`` against the chunked loss.

Both sides compute the summed cross-entropy of ``hidden @ weight.T`` against random labels
(10% ignored) and its gradients for ``hidden`` and ``weight``, as a training step's head does:

* reference: ``F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")``,
  as ``XLlamaModule.response_loss`` computes it from the model's logits;
* chunked: ``lightning_xllama.training.chunked_loss.chunked_cross_entropy`` with ``--chunk-size`` rows.

Each side runs in its own fresh subprocess, in the same invocation, so neither sees the other's
allocator state. The memory reported is the peak of forward + backward over the baseline taken
after the inputs exist: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on CPU the
resident set. On Linux the child resets its RSS high-water mark (``/proc/self/clear_refs``)
right before the timed pass and reads ``VmHWM``: ``ru_maxrss`` never goes down, so a transient
peak before the baseline (importing torch, casting the inputs) would hide part of the loss's
own; and Linux carries the parent's high-water mark across fork and exec. Elsewhere it falls
back to ``ru_maxrss`` minus its value at the baseline. The first pass is timed as it is (no
warm-up) on CPU; on CUDA one untimed pass runs first.

    .venv/bin/python benchmarks/loss_memory.py [--vocab 32000 --hidden 2048 --tokens 8192 --chunk-size 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_assets import (  # benchmarks/ is on sys.path
    add_run_arguments,
    run_benchmark,
    run_worker,
)

REPO = Path(__file__).resolve().parents[1]

METHODS = ("reference", "chunked")
GOAL = 0.25  # the target: the chunked loss's peak <= 1/4 of the reference's at vocab 32,000
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument(
        "--tokens", type=int, default=8192, help="rows of the loss (batch x sequence)"
    )
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda or auto (cuda where there is one)"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="of hidden states and weight; auto: bfloat16 on CUDA, float32 on CPU "
        "(CPU bf16 matmuls are several times slower on most CPUs)",
    )
    add_run_arguments(
        parser,
        seed_help="seed of the random hidden states, weight and labels",
        out_help="also write the table (.md) or the results (.json)",
        worker=dict(choices=METHODS),
    )
    return parser.parse_args(argv)


# --- one side, in its own process -----------------------------------------------------------
def rss_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in bytes (Linux), empty elsewhere."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in lines
        if line.startswith(("VmRSS:", "VmHWM:"))
    }


def reset_rss_peak() -> bool:
    """Lower the RSS high-water mark to the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def max_rss() -> int:
    import resource

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, KiB on Linux


def worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from lightning_xllama.training.chunked_loss import chunked_cross_entropy

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype_name = (
        args.dtype if args.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    )
    dtype = getattr(torch, dtype_name)
    g = torch.Generator(device=device).manual_seed(args.seed)
    hidden = torch.randn(
        args.tokens, args.hidden, generator=g, device=device, dtype=dtype
    ).requires_grad_()
    weight = (
        torch.randn(args.vocab, args.hidden, generator=g, device=device, dtype=dtype)
        * args.hidden**-0.5
    ).requires_grad_()
    labels = torch.randint(0, args.vocab, (args.tokens,), generator=g, device=device)
    labels[torch.rand(args.tokens, generator=g, device=device) < 0.1] = -100

    def step() -> torch.Tensor:
        if args.worker == "reference":
            loss = F.cross_entropy(
                F.linear(hidden, weight).float(), labels, ignore_index=-100, reduction="sum"
            )
        else:
            loss = chunked_cross_entropy(hidden, weight, labels, chunk_size=args.chunk_size)
        loss.backward()
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        step()  # kernels and allocator warmed up; then the gradients go
    hidden.grad = weight.grad = None
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        method = "torch.cuda.max_memory_allocated"
    elif reset_rss_peak():
        baseline = rss_status()["VmRSS"]
        method = "VmHWM after clear_refs"
    else:
        baseline = max_rss()
        method = "ru_maxrss"
    start = time.perf_counter()
    loss = step()
    sync()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    elif method == "ru_maxrss":
        peak = max_rss()
    else:
        peak = rss_status()["VmHWM"]
    return {
        "method": args.worker,
        "device": str(device),
        "dtype": dtype_name,
        "memory_measure": method,
        "peak_mib": (peak - baseline) / MIB,
        "seconds": seconds,
        "loss": loss.item(),
        "weight_grad_norm": weight.grad.float().norm().item(),
        "hidden_grad_norm": hidden.grad.float().norm().item(),
        "threads": torch.get_num_threads(),
    }


# --- the table ------------------------------------------------------------------------------
def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    ref, chunked = results["reference"], results["chunked"]
    logits_mib = args.tokens * args.vocab * 4 / MIB
    lines = [
        f"loss forward + backward, {args.tokens:,} tokens x vocab {args.vocab:,}, hidden {args.hidden:,}, "
        f"{ref['dtype']} on {ref['device']} ({ref['threads']} threads), peak over the inputs "
        f"({ref['memory_measure']}); fp32 logits of the batch: {logits_mib:,.0f} MiB",
        "",
        "| loss | peak memory (MiB) | wall time (s) | loss value |",
        "| --- | ---: | ---: | ---: |",
        f"| reference: full logits + .float() + cross_entropy | {ref['peak_mib']:,.0f} | {ref['seconds']:.2f} "
        f"| {ref['loss']:,.2f} |",
        f"| chunked, {args.chunk_size:,} rows a chunk | {chunked['peak_mib']:,.0f} | {chunked['seconds']:.2f} "
        f"| {chunked['loss']:,.2f} |",
        f"| chunked / reference | {chunked['peak_mib'] / ref['peak_mib']:.3f} "
        f"| {chunked['seconds'] / ref['seconds']:.2f} | |",
    ]
    ratio = chunked["peak_mib"] / ref["peak_mib"]
    keys = ("loss", "weight_grad_norm", "hidden_grad_norm")
    agree = max(abs(chunked[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in keys)
    lines += [
        "",
        f"peak memory chunked / reference: {ratio:.3f} ({'meets' if ratio <= GOAL else 'does NOT meet'} "
        f"the goal of <= {GOAL}); loss and gradient norms agree to a relative {agree:.1e}",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> tuple[str, object]:
    """Each loss in its own process; the table and the results."""
    results = {}
    for method in METHODS:
        options = {
            "--worker": method,
            "--vocab": args.vocab,
            "--hidden": args.hidden,
            "--tokens": args.tokens,
            "--chunk-size": args.chunk_size,
            "--device": args.device,
            "--dtype": args.dtype,
            "--seed": args.seed,
        }
        line = "{}: peak {peak_mib:,.0f} MiB, {seconds:.2f} s"
        results[method] = run_worker(__file__, options, method, lambda r: line.format(method, **r))
    return table(results, args), results


if __name__ == "__main__":
    run_benchmark(sys.argv[1:], parse_args, worker, measure)
