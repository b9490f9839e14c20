"""Run by test_resume.py and test_export.py: training sharded with FSDP2 on CPU ranks (gloo).

    fsdp2_run.py MODEL DATA OUT --devices 2 --steps 4 --accumulate 2 [--resume CKPT] [--sigterm-at STEP]

Writes under OUT (rank 0): ``losses.json`` (loss of each optimizer step), ``logits_start.pt``
(logits of a fixed input from the freshly sharded model, before any checkpoint is restored) and
``logits_end.pt``; checkpoints (sharded folders) go to ``OUT/checkpoints`` every
``--save-every`` steps and on SIGTERM. ``--sigterm-at S`` makes rank 0 send itself SIGTERM at the
first micro-batch after step S, in the middle of the next optimizer step.
"""

import argparse
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch
from sharded_utils import LEARNING_RATE, StepLosses, probe_logits
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import ResumableCheckpoint
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import DecoderFSDP2Strategy


class Probe(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_fit_start(
        self, trainer, pl_module
    ):  # sharded and loaded; a checkpoint is restored later
        self._save(trainer, pl_module, "logits_start.pt")

    def on_fit_end(self, trainer, pl_module):
        self._save(trainer, pl_module, "logits_end.pt")

    def _save(self, trainer, pl_module, name):
        logits = probe_logits(pl_module.model)  # a collective: every rank runs it
        if trainer.is_global_zero:
            torch.save(logits, self.out / name)


class SendSigterm(L.Callback):
    """Rank 0 signals itself at the first micro-batch after step ``step`` (mid-step when accumulating)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        first_micro_batch = batch_idx % trainer.accumulate_grad_batches == 0
        if trainer.is_global_zero and trainer.global_step == self.step and first_micro_batch:
            os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--resume")
    parser.add_argument("--sigterm-at", type=int)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    L.seed_everything(0)
    recorder = StepLosses()
    callbacks = [
        recorder,
        Probe(args.out),
        ResumableCheckpoint(
            str(args.out / "checkpoints"),
            every_n_train_steps=args.save_every,
            save_top_k=-1,
            save_last=False,
        ),
    ]
    if args.sigterm_at is not None:
        callbacks.append(SendSigterm(args.sigterm_at))
    trainer = quiet_trainer(
        devices=args.devices,
        strategy=DecoderFSDP2Strategy(param_dtype="fp32"),
        max_steps=args.steps,
        accumulate_grad_batches=args.accumulate,
        callbacks=callbacks,
        enable_checkpointing=True,  # the ResumableCheckpoint above
    )
    datamodule = tiny_datamodule(
        args.model, args.data, batch_size=2, cache_dir=str(args.out.parent / "cache")
    )
    try:
        module = XLlamaModule(args.model, learning_rate=LEARNING_RATE, warmup_ratio=0.0)
        trainer.fit(module, datamodule=datamodule, ckpt_path=args.resume)
    finally:
        if trainer.is_global_zero:
            (args.out / "losses.json").write_text(json.dumps(recorder.losses))
        if (
            torch.distributed.is_initialized()
        ):  # Lightning leaves it; gloo can abort at exit otherwise
            torch.distributed.destroy_process_group()
