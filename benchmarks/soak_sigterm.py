"""Soak check of pre-emption: a run stopped by SIGTERM at random steps, resumed each time, against
the same run uninterrupted.

    .venv/bin/python benchmarks/soak_sigterm.py                       # demo config, 5 stops, 60 steps
    .venv/bin/python benchmarks/soak_sigterm.py --interruptions 10 --max-steps 120 --num-workers 2

Each run is ``python -m lightning_xllama fit`` in its own process group, as a scheduler starts a
job; the signal goes to the whole group (loader workers included), as SLURM sends it. The config's
callbacks are replaced by a ``ResumableCheckpoint`` (``save_last``) and a step marker, and the
evaluation callbacks are left out (they do not change the weights). Every resumed run is started
with ``--ckpt_path last``, as a requeued job is. Reported: the number of stops, whether each
exited 0 having saved, whether the final weights equal the uninterrupted run's bit for bit, and
the largest difference between the two runs' losses at the same step.
Needs ``prepare-demo`` first for the default config. Not part of CI: it takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


class StepMarker(L.Callback):
    """Writes the optimizer steps done to ``path`` after every batch (whole, by a rename)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        partial = self.path.with_suffix(".partial")
        partial.write_text(str(trainer.global_step))
        partial.replace(self.path)


def soak_run(
    config: Path,
    max_steps: int,
    num_workers: int,
    marker: Path,
    checkpoint: dict | None = None,
    **trainer,
) -> dict:
    """The config's run for a soak: ``max_steps`` steps logged every step, no validation, a
    ``ResumableCheckpoint`` saving ``last`` (with ``checkpoint`` added to its arguments) and a
    :class:`StepMarker` writing ``marker`` as its only callbacks, ``trainer`` added."""
    run = yaml.safe_load(config.read_text())
    run["trainer"].update(
        max_steps=max_steps,
        max_epochs=None,
        log_every_n_steps=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        callbacks=[
            {
                "class_path": "lightning_xllama.callbacks.ResumableCheckpoint",
                "init_args": {"save_last": True, **(checkpoint or {})},
            },
            {"class_path": "soak_sigterm.StepMarker", "init_args": {"path": str(marker)}},
        ],
        **trainer,
    )
    run["trainer"].pop("val_check_interval", None)
    run["data"]["init_args"]["num_workers"] = num_workers
    return run


def soak_config(config: Path, out: Path, max_steps: int, num_workers: int, marker: Path) -> Path:
    run = soak_run(config, max_steps, num_workers, marker, default_root_dir=str(out / "runs"))
    path = out / "soak.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def start(config: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")]),
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lightning_xllama", "fit", "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def output_folder(args: argparse.Namespace) -> Path:
    """``--out`` under the repository, refused when it exists already."""
    out = REPO / args.out
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pass another --out")
    return out


def run_uninterrupted(config: Path) -> None:
    """The reference run of ``config``, to its end; stops the soak when it fails."""
    run = start(config)
    log = run.communicate()[0]
    if run.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{log[-3000:]}")


def steps_done(marker: Path) -> int:
    return int(marker.read_text()) if marker.exists() else 0


def losses(runs: Path) -> dict[int, float]:
    """train/loss by step over every version folder (a resumed run logs into a new one)."""
    found = {}
    for metrics in sorted(runs.glob("lightning_logs/version_*/metrics.csv")):
        for row in csv.DictReader(metrics.open()):
            if row.get("train/loss"):
                found[int(row["step"])] = float(row["train/loss"])
    return found


def final_weights(runs: Path) -> dict[str, torch.Tensor]:
    newest = max(
        runs.glob("lightning_logs/version_*/checkpoints/last.ckpt"),
        key=lambda p: int(p.parent.parent.name.split("_")[1]),
    )
    return torch.load(newest, weights_only=True, map_location="cpu")["state_dict"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--interruptions", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="of the random stop steps")
    parser.add_argument("--out", default="artifacts/bench/soak_sigterm")
    args = parser.parse_args()
    out = output_folder(args)
    rng = random.Random(args.seed)

    reference_dir, soaked_dir = out / "uninterrupted", out / "interrupted"
    for folder in (reference_dir, soaked_dir):
        folder.mkdir(parents=True)
    reference = soak_config(
        REPO / args.config, reference_dir, args.max_steps, args.num_workers, reference_dir / "steps"
    )
    run_uninterrupted(reference)

    marker = soaked_dir / "steps"
    config = soak_config(REPO / args.config, soaked_dir, args.max_steps, args.num_workers, marker)
    if args.interruptions > args.max_steps - 2:
        raise SystemExit(f"--interruptions at most {args.max_steps - 2} for {args.max_steps} steps")
    # distinct steps spread over the run; each run is stopped at the first target it has not passed
    targets = sorted(rng.sample(range(2, args.max_steps), args.interruptions))
    stops = []
    for attempt in range(args.interruptions + 1):
        run = start(config, *(["--ckpt_path", "last"] if attempt else []))
        done = steps_done(marker)
        targets = [t for t in targets if t > done]  # a stop may overrun the next target by one
        target = targets.pop(0) if targets else None
        if target is not None:
            while run.poll() is None and steps_done(marker) < target:
                time.sleep(0.05)
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGTERM)
        log = run.communicate()[0]
        saved = [line for line in log.splitlines() if "saving and stopping after step" in line]
        stops.append(
            {
                "signalled_at_step": target,
                "exit_status": run.returncode,
                "saved_at_step": int(saved[0].rsplit(" ", 1)[1]) if saved else None,
            }
        )
        if run.returncode != 0:
            raise SystemExit(f"run {attempt} exited {run.returncode}:\n{log[-3000:]}")
        if target is None:  # the last run, to the end
            break

    expected, observed = losses(reference_dir / "runs"), losses(soaked_dir / "runs")
    common = sorted(set(expected) & set(observed))
    largest = max((abs(expected[s] - observed[s]) for s in common), default=float("nan"))
    a, b = final_weights(reference_dir / "runs"), final_weights(soaked_dir / "runs")
    equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report = {
        "config": args.config,
        "max_steps": args.max_steps,
        "num_workers": args.num_workers,
        "interruptions": sum(1 for s in stops if s["saved_at_step"] is not None),
        "stops": stops,
        "steps_compared": len(common),
        "steps_missing": sorted(set(expected) - set(observed)),
        "largest_loss_difference": largest,
        "final_weights_equal": equal,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(
        "| stops | exit statuses | saved at steps | steps compared | largest loss diff | final weights equal |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {report['interruptions']} | {sorted({s['exit_status'] for s in stops})} | "
        f"{[s['saved_at_step'] for s in stops if s['saved_at_step'] is not None]} | "
        f"{len(common)} of {len(expected)} | {largest:.3g} | {equal} |"
    )


if __name__ == "__main__":
    main()
