"""Helpers shared by the sharding, resume and export tests and the scripts they launch."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import lightning as L
import torch
from paths import HELPERS, helper_env

LEARNING_RATE = 1e-3  # large enough that every step moves the loss visibly
PROBE = torch.arange(3, 3 + 2 * 12).reshape(2, 12)  # token ids for comparing logits


class StepLosses(L.Callback):
    """The loss of each optimizer step, by global step (1 = the first step)."""

    def __init__(self):
        self.losses: dict[int, float] = {}
        self._step_before = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > self._step_before:  # this batch finished an optimizer step
            self.losses[trainer.global_step] = float(trainer.callback_metrics["train/loss"])


def probe_logits(model) -> torch.Tensor:
    """Logits of :data:`PROBE` (every rank of a sharded model must call this)."""
    with torch.no_grad():
        return model(input_ids=PROBE).logits.float()


def rank_batches(datamodule, rank: int, world_size: int, count: int) -> list[dict]:
    """The first ``count`` training batches of ``rank`` among ``world_size``, as its loader gives them."""
    datamodule.setup("fit")
    dataset = datamodule.train_dataset(rank, world_size)
    batches = [
        dataset.collated(b) for b in islice(dataset.encoded_batches(epoch=0, start=0), count)
    ]
    for batch in batches:
        batch.pop("report")
    return batches


def interleaved_batches(datamodule, world_size: int, accumulate: int, steps: int) -> list[dict]:
    """The micro-batches of ``steps`` optimizer steps on ``world_size`` ranks, in the order one
    process takes them with ``world_size * accumulate`` accumulation: the same data per step."""
    per_rank = [
        rank_batches(datamodule, r, world_size, steps * accumulate) for r in range(world_size)
    ]
    return [
        b
        for s in range(steps)
        for r in range(world_size)
        for b in per_rank[r][s * accumulate : (s + 1) * accumulate]
    ]


def launch(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``tests/{script}`` as its own process (Lightning's launcher starts the other ranks)."""
    env = helper_env()
    return subprocess.run(
        [sys.executable, str(HELPERS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_losses(out: Path) -> dict[int, float]:
    return {int(k): v for k, v in json.loads((out / "losses.json").read_text()).items()}


def sharded_run(root: Path, model: str, data: Path) -> Path:
    """The 2-rank FSDP2 run the sharding, resume and export tests compare with: 4 optimizer steps
    of 2 micro-batches of 2 examples per rank, sharded checkpoints after steps 2 and 4. Run once
    per session (several test modules use it); returns its output folder."""
    out = root / "sharded_run" / "uninterrupted"
    if not (out / "done").is_file():
        result = launch(
            "fsdp2_run.py", model, str(data), str(out), "--steps", "4", "--accumulate", "2"
        )
        assert result.returncode == 0, result.stderr[-4000:]
        (out / "done").touch()
    return out


def checkpoint_at(out: Path, step: int) -> Path:
    (path,) = (out / "checkpoints").glob(f"*step={step}.ckpt")
    return path
