"""Run by test_clipping_and_cache.py: one FSDP2 step on 2 CPU ranks with clipping at 0.05; rank 0
saves the full clipped gradients the optimizer stepped with.

    fsdp2_clip.py MODEL DATA OUT
"""

import sys

import lightning as L
import torch
from torch.distributed.tensor import DTensor
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import DecoderFSDP2Strategy


class FullGradients(L.Callback):
    """The gradients the optimizer stepped with, gathered whole (a collective: every rank runs
    it). A post-step hook: the closure (backward, clipping) runs inside ``optimizer.step``."""

    def on_train_start(self, trainer, pl_module):
        def hook(optimizer, args, kwargs):
            grads = {
                n: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad)
                .detach()
                .clone()
                for n, p in pl_module.named_parameters()
                if p.grad is not None
            }
            if trainer.is_global_zero:
                torch.save(grads, f"{sys.argv[3]}.pt")

        trainer.optimizers[0].register_step_post_hook(hook)


if __name__ == "__main__":
    model_path, data_path = sys.argv[1:3]
    L.seed_everything(0)
    strategy = DecoderFSDP2Strategy(param_dtype="fp32", process_group_backend="gloo")
    trainer = quiet_trainer(
        devices=2,
        strategy=strategy,
        max_steps=1,
        gradient_clip_val=0.05,
        callbacks=[FullGradients()],
    )
    trainer.fit(XLlamaModule(model_path), datamodule=tiny_datamodule(model_path, data_path))
