"""Soak check of checkpoint writes: kill -9 at random moments of a run that saves every step, with
the checkpoints on their own filesystem (a tmpfs) and the temporary folder on another; each
restart resumes with ``--ckpt_path last``; the losses are compared with an unbroken run.

    .venv/bin/python benchmarks/soak_kill_during_save.py                  # demo config, 6 kills, 40 steps
    .venv/bin/python benchmarks/soak_kill_during_save.py --kills 10 --max-steps 60

Needs root (it mounts a tmpfs; without root it says so and stops) and ``prepare-demo`` first for
the default config. After a random number of steps, the run is killed within 20 ms of a
checkpoint write starting (a step file and ``last.ckpt`` are written every step), so most kills
land during a write. Reported: kills, how many
found a checkpoint being written, restarts and whether each resumed (and from which step),
restarts that had to fall back from a ``last.ckpt`` that did not load, files left in the
temporary folder, the largest difference between the losses of the two runs at the same step,
and whether the final weights are equal. Not part of CI: it takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import yaml
from soak_sigterm import (
    REPO,
    final_weights,
    output_folder,
    run_uninterrupted,
    soak_run,
    start,
    steps_done,
)

from lightning_xllama.runtime.checkpoint_io import PARTIAL_SUFFIX


def soak_config(config: Path, out: Path, max_steps: int, num_workers: int, marker: Path) -> Path:
    """The config's run, saving every step, logging every step (flushed: a killed run keeps its
    losses), without the evaluation callbacks."""
    run = soak_run(
        config,
        max_steps,
        num_workers,
        marker,
        {"every_n_train_steps": 1},
        default_root_dir=str(out),
        logger={
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(out), "flush_logs_every_n_steps": 1},
        },
    )
    path = marker.parent / "soak.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def losses(runs: Path) -> dict[int, float]:
    """train/loss by step over the version folders, a later run's value replacing an earlier one's
    (a step redone after a kill)."""
    found = {}
    folders = sorted(runs.glob("lightning_logs/version_*"), key=lambda p: int(p.name[8:]))
    for folder in folders:
        if (folder / "metrics.csv").is_file():
            for row in csv.DictReader((folder / "metrics.csv").open()):
                try:  # the last line of a killed run's log may be cut short
                    found[int(row["step"])] = float(row["train/loss"])
                except (TypeError, ValueError):
                    continue
    return found


def partial_files(runs: Path) -> list[Path]:
    return [p for p in runs.rglob(f"*{PARTIAL_SUFFIX}")]


def mount_tmpfs(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit("skipped: mounting a tmpfs for the checkpoints needs root")
    folder.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"skipped: cannot mount a tmpfs at {folder}: {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--tmpfs-size", default="1g", help="of the checkpoints' filesystem")
    parser.add_argument("--seed", type=int, default=0, help="of the kill times")
    parser.add_argument("--out", default="artifacts/bench/soak_kill_during_save")
    args = parser.parse_args()
    out = output_folder(args)
    rng = random.Random(args.seed)
    temporary = out / "tmp"  # the runs' TMPDIR, on the disk, not on the checkpoints' tmpfs
    temporary.mkdir(parents=True)
    os.environ["TMPDIR"] = str(temporary)
    tempfile.tempdir = None

    reference_dir = out / "uninterrupted"
    reference_dir.mkdir()
    reference = soak_config(
        REPO / args.config, reference_dir, args.max_steps, args.num_workers, reference_dir / "steps"
    )
    started = time.monotonic()
    run_uninterrupted(reference)
    seconds_per_step = (time.monotonic() - started) / args.max_steps

    work = out / "killed"
    work.mkdir()
    runs = work / "checkpoints_fs"
    mount_tmpfs(runs, args.tmpfs_size)
    try:
        report = soak(args, rng, work, runs, temporary, seconds_per_step)
        expected, observed = losses(reference_dir), losses(runs)
        common = sorted(set(expected) & set(observed))
        largest = max((abs(expected[s] - observed[s]) for s in common), default=float("nan"))
        a, b = final_weights(reference_dir), final_weights(runs)
        equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        report.update(
            steps_compared=len(common),
            steps_missing=sorted(set(expected) - set(observed)),
            largest_loss_difference=largest,
            final_weights_equal=equal,
        )
    finally:
        subprocess.run(["umount", str(runs)], check=False)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    restarts = report["restarts"]
    print(
        "| kills | during a save | restarts | resumed | fell back | files left in TMPDIR "
        "| steps compared | largest loss diff | final weights equal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {report['kills']} | {report['kills_during_a_save']} | {len(restarts)} | "
        f"{sum(r['resumed_from'] is not None for r in restarts)} | "
        f"{sum(r['fell_back'] for r in restarts)} | {len(report['temporary_files_left'])} | "
        f"{report['steps_compared']} of {args.max_steps} | {report['largest_loss_difference']:.3g} "
        f"| {report['final_weights_equal']} |"
    )


def soak(args, rng, work, runs, temporary, seconds_per_step) -> dict:
    marker = work / "steps"
    config = soak_config(REPO / args.config, runs, args.max_steps, args.num_workers, marker)
    kills, during_save, restarts = 0, 0, []
    while True:
        attempt = kills
        run = start(config, *(["--ckpt_path", "last"] if attempt else []))
        done, before = steps_done(marker), set(partial_files(runs))
        if kills < args.kills:
            target = min(done + rng.randint(1, 3), args.max_steps - 1)
            while run.poll() is None and steps_done(marker) < target:
                time.sleep(0.01)
            # the step's saves start: a checkpoint being written appears beside its name
            deadline = time.monotonic() + 2 * seconds_per_step
            while run.poll() is None and time.monotonic() < deadline:
                if set(partial_files(runs)) - before:
                    break
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                kills += 1
                during_save += bool(set(partial_files(runs)) - before)  # a write cut short
        log = run.communicate()[0]
        if attempt:
            resumed = re.search(r"resuming from (\S+)", log)
            restarts.append(
                {
                    "resumed_from": resumed.group(1) if resumed else None,
                    "fell_back": "does not load" in log,
                    "exit_status": run.returncode,
                }
            )
            # a kill before the first checkpoint was whole leaves none: the restart starts over
            if resumed is None and "training starts from the base model" not in log:
                raise SystemExit(f"restart {attempt} did not resume:\n{log[-3000:]}")
        if run.returncode == 0:
            break
        if run.returncode != -signal.SIGKILL:
            raise SystemExit(f"run {attempt} exited {run.returncode}:\n{log[-3000:]}")
    return {
        "config": args.config,
        "max_steps": args.max_steps,
        "kills": kills,
        "kills_during_a_save": during_save,
        "restarts": restarts,
        "partial_files_in_checkpoint_folders": [str(p) for p in partial_files(runs)],
        "temporary_files_left": [str(p) for p in temporary.rglob("*") if p.is_file()],
    }


if __name__ == "__main__":
    main()
