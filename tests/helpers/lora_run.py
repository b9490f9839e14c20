"""Run by test_lora.py: LoRA training on 2 CPU ranks (gloo), three fits in one launch (the
process group and the imports are paid once):

    lora_run.py MODEL DATA OUT

1. ``OUT/uninterrupted``: FSDP2 with activation checkpointing, 4 steps, sharded checkpoints after
   steps 2 and 4, ``HFExport`` writing the adapter folder to ``OUT/adapter``;
2. ``OUT/resumed``: the same, resumed from the step-2 checkpoint of 1;
3. ``OUT/ddp``: DDP, 2 steps, a checkpoint file after step 2.

Each run folder gets (rank 0) ``losses.json`` (loss of each optimizer step), ``counts.json`` (the
module's trainable and total parameters as each rank counted them) and ``logits_end.pt``.
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch
from sharded_utils import LEARNING_RATE, StepLosses, probe_logits
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import HFExport, ResumableCheckpoint
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import DecoderFSDP2Strategy

LORA = dict(lora_rank=4, lora_alpha=8.0, lora_dropout=0.0)


class Probe(L.Callback):
    """The logits of a fixed input at the end (a collective under FSDP2) and the counts."""

    def __init__(self, out: Path):
        self.out = out

    def on_fit_end(self, trainer, pl_module):
        logits = probe_logits(pl_module.model)
        counts = trainer.strategy.all_gather(torch.tensor(pl_module.parameter_counts))
        if trainer.is_global_zero:
            torch.save(logits, self.out / "logits_end.pt")
            (self.out / "counts.json").write_text(json.dumps(counts.tolist()))


def fit(model: str, data: str, out: Path, strategy, steps: int, resume=None, export=None):
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    recorder = StepLosses()
    callbacks = [
        recorder,
        Probe(out),
        ResumableCheckpoint(
            str(out / "checkpoints"), every_n_train_steps=2, save_top_k=-1, save_last=False
        ),
    ]
    if export:
        callbacks.append(HFExport(str(export), lora_output="adapter"))
    trainer = quiet_trainer(
        devices=2,
        strategy=strategy,
        max_steps=steps,
        gradient_clip_val=1.0,
        enable_checkpointing=True,
        callbacks=callbacks,
    )
    datamodule = tiny_datamodule(model, data, batch_size=2, cache_dir=str(out.parent / "cache"))
    module = XLlamaModule(model, learning_rate=LEARNING_RATE, warmup_ratio=0.0, **LORA)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    if trainer.is_global_zero:
        (out / "losses.json").write_text(json.dumps(recorder.losses))


if __name__ == "__main__":
    model, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    def fsdp2():
        return DecoderFSDP2Strategy(param_dtype="fp32", activation_checkpointing=True)

    try:
        first = out / "uninterrupted"
        fit(model, data, first, fsdp2(), 4, export=out / "adapter")
        step_2 = first / "checkpoints" / "epoch=0-step=2.ckpt"
        fit(model, data, out / "resumed", fsdp2(), 4, resume=str(step_2))
        fit(model, data, out / "ddp", "ddp", 2)
    finally:
        if torch.distributed.is_initialized():  # gloo can abort at exit otherwise
            torch.distributed.destroy_process_group()
