"""What the benchmarks share: the small demo model and corpora (built once, cached by shape), a
quiet Trainer, and the skeleton of a script that measures each case in a fresh process.

The skeleton: ``parse_args`` adds the script's own options and :func:`add_run_arguments`
(``--threads``, ``--seed``, ``--out`` and the hidden ``--worker``); ``main`` is
:func:`run_benchmark`: a worker process reports its result (:func:`report`); the parent runs each
case with :func:`run_worker` and prints the table (:func:`print_and_write`). :func:`run_package` runs
a ``python -m lightning_xllama`` command (a whole ``fit`` or ``evaluate``) the same way. The tests' helpers use :func:`quiet_trainer` too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
CORPUS = dict(pretraining=5000, instructions=1000, parallel=2000, vocab_size=2048)
CACHE_DIR = REPO / "artifacts" / "bench"
RESULT_PREFIX = "BENCH_RESULT "
"""Starts the line on which a worker process prints its result as JSON."""


def quiet_trainer(**kwargs):
    """A ``lightning.Trainer`` that trains and nothing else: one CPU device, no logger, checkpoint,
    progress bar, model summary, sanity check or validation, so what is timed or tested is the
    training. ``kwargs`` override or add Trainer arguments."""
    import lightning as L  # here: importing this module stays cheap for the data benchmarks

    off = ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary")
    no_validation = {"num_sanity_val_steps": 0, "limit_val_batches": 0}
    defaults = {"accelerator": "cpu", "devices": 1, **dict.fromkeys(off, False), **no_validation}
    return L.Trainer(**{**defaults, **kwargs})


def add_run_arguments(
    parser: argparse.ArgumentParser,
    seed_help: str,
    out_help: str,
    seed: int = 0,
    threads_help: Optional[str] = None,
    worker: Optional[dict[str, Any]] = None,
) -> None:
    """``--seed`` (default ``seed``), ``--out`` (a path), ``--threads`` (torch intra-op threads,
    default 1; only with ``threads_help``) and the hidden ``--worker`` (``worker``: more
    ``add_argument`` keywords for it, e.g. ``type`` or ``choices``; None: no ``--worker``), each
    with its help text."""
    if threads_help is not None:
        parser.add_argument("--threads", type=int, default=1, help=threads_help)
    parser.add_argument("--seed", type=int, default=seed, help=seed_help)
    parser.add_argument("--out", type=Path, help=out_help)
    if worker is not None:
        parser.add_argument("--worker", help=argparse.SUPPRESS, **worker)


def run_benchmark(
    argv: Optional[list[str]],
    parse_args: Callable[[Optional[list[str]]], argparse.Namespace],
    worker: Callable[[argparse.Namespace], dict],
    measure: Callable[[argparse.Namespace], tuple[str, Any]],
) -> None:
    """A benchmark's ``main``: in a worker process (``--worker``), report ``worker(args)`` to the
    parent; otherwise ``measure(args)`` (which runs the workers) gives the table and the results,
    printed and written to ``--out``."""
    args = parse_args(argv)
    if args.worker is not None:
        report(worker(args))
        return
    text, results = measure(args)
    print_and_write(text, results, args.out)


def report(result: dict, prefix: str = RESULT_PREFIX) -> None:
    """In a worker process: print ``result`` for the parent (:func:`child_result` reads it)."""
    print(prefix + json.dumps(result), flush=True)


def run_worker(
    script: str,
    options: dict[str, Any],
    what: str,
    progress: Optional[Callable[[dict], str]] = None,
    **run,
) -> dict:
    """Run ``script`` again in a fresh process with ``options`` (``{"--name": value}``; a value
    of None passes the flag alone) and return the result its worker reported (``progress``: a
    line about it, printed to stderr). The package is importable there, tokenizers
    single-threaded; ``run``: more ``subprocess.run`` keywords."""
    command = [sys.executable, script]
    for option, value in options.items():
        command += [option] if value is None else [option, str(value)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, **run)
    result = child_result(done, what)
    if progress is not None:
        print(progress(result), file=sys.stderr, flush=True)
    return result


def run_package(
    command: list[str],
    log: Path,
    threads: int,
    cwd: Path = REPO,
    env: Optional[dict[str, Optional[str]]] = None,
) -> None:
    """``python -m lightning_xllama COMMAND`` in a fresh process in ``cwd`` with ``threads``
    torch threads, its output in ``log``; ``env``: more variables (None removes one). A failure
    exits naming the command, with the log's last lines."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
    }
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "lightning_xllama", *command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=cwd,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(
            f"{' '.join(command[:1])} failed (status {done.returncode}); {log}:\n{tail}"
        )


def add_asset_arguments(
    parser: argparse.ArgumentParser, pretrain_steps: int, pretrain_help: str
) -> None:
    """The options :func:`build_assets` reads (the seed stays with each script: it seeds more there)."""
    parser.add_argument(
        "--hidden-size", type=int, default=192, help="width of the small LLaMA (the demo's)"
    )
    parser.add_argument(
        "--layers", type=int, default=4, help="decoder layers of the small LLaMA (the demo's)"
    )
    parser.add_argument("--pretrain-steps", type=int, default=pretrain_steps, help=pretrain_help)
    parser.add_argument(
        "--cache-dir", type=Path, default=CACHE_DIR, help="where the demo assets are cached"
    )


def build_assets(args: argparse.Namespace) -> Path:
    """``prepare_demo`` under ``args.cache_dir``, one folder per model shape, pretraining and seed."""
    from lightning_xllama.demo.prepare import prepare_demo

    out = args.cache_dir / f"h{args.hidden_size}_l{args.layers}_p{args.pretrain_steps}_s{args.seed}"
    prepare_demo(
        output_dir=str(out),
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        pretrain_steps=args.pretrain_steps,
        seed=args.seed,
        **CORPUS,
    )
    return out


def child_result(done: subprocess.CompletedProcess, what: str, prefix: str = RESULT_PREFIX) -> dict:
    """The JSON a measuring child process printed after ``prefix`` (each measurement runs in a
    fresh process, so its peak memory is its own); its stderr if it failed."""
    if done.returncode != 0:
        raise SystemExit(f"the {what} run failed:\n{done.stderr[-3000:]}")
    line = next(row for row in done.stdout.splitlines() if row.startswith(prefix))
    return json.loads(line[len(prefix) :])


def print_and_write(text: str, results, out: Optional[Path]) -> None:
    """Print the table; with ``out``, write it there too (a ``.json`` path: the raw results)."""
    print(text)
    if out:
        out.write_text(json.dumps(results, indent=1) if out.suffix == ".json" else text + "\n")
