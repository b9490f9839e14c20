"""Run by test_training.py: one optimizer step on 2 CPU ranks (DDP, gloo), gradients saved."""

import sys

import lightning as L
import torch
from training_utils import GradientCapture, quiet_trainer, tiny_datamodule

from lightning_xllama.training.module import XLlamaModule

if __name__ == "__main__":
    model_path, data_path, out = sys.argv[1:4]
    L.seed_everything(0)
    capture = GradientCapture()
    trainer = quiet_trainer(devices=2, strategy="ddp", max_steps=1, callbacks=[capture])
    trainer.fit(XLlamaModule(model_path), datamodule=tiny_datamodule(model_path, data_path))
    torch.save(capture.steps[0], f"{out}.rank{trainer.global_rank}.pt")
