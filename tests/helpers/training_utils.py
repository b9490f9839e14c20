"""Helpers shared by the training tests and the 2-process script they launch."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from lightning_xllama.data import CoITDataModule
from lightning_xllama.data.collate import PadCollator
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.training.module import XLlamaModule

# The benchmarks' quiet Trainer (one CPU device, no logger, checkpoint, progress bar, summary or
# validation): benchmarks are scripts a user runs without the tests, so the tests import theirs.
sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_assets import quiet_trainer  # noqa: E402, F401  (the tests import it from here)


def tiny_datamodule(model: str, data: Path | str, **overrides) -> CoITDataModule:
    data = Path(data)
    kwargs = dict(
        language="syn_far",
        english_instructions=str(DataLayout(data).instructions("en")),
        translated_instructions=str(DataLayout(data).instructions("syn_far")),
        parallel=str(DataLayout(data).parallel("syn_far")),
        tokenizer=model,
        # the 1:1:1 total mixture the pinned losses were measured on (without weights an epoch
        # would take every example once)
        weights={"english": 1.0, "translated": 1.0, "parallel": 1.0},
        batch_size=2,
        seed=7,
    )
    return CoITDataModule(**{**kwargs, **overrides})


def fit_tiny(model: str, data: Path | str, datamodule: dict | None = None, **trainer) -> L.Trainer:
    """A :func:`quiet_trainer` (``trainer`` its arguments) fitting ``XLlamaModule(model)`` at
    learning rate 1e-3 on :func:`tiny_datamodule` (``datamodule`` its overrides); returns the
    trainer."""
    fitting = quiet_trainer(**trainer)
    fitting.fit(
        XLlamaModule(model, learning_rate=1e-3),
        datamodule=tiny_datamodule(model, data, **(datamodule or {})),
    )
    return fitting


class GradientCapture(L.Callback):
    """Records the gradients the optimizer stepped with (after all rescaling and clipping).

    A post-step hook: Lightning runs the last micro-batch's backward inside ``optimizer.step``
    (as its closure), so a pre-step hook would fire too early.
    """

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        def hook(optimizer, args, kwargs):
            self.steps.append(
                {
                    n: p.grad.detach().clone()
                    for n, p in pl_module.named_parameters()
                    if p.grad is not None
                }
            )

        trainer.optimizers[0].register_step_post_hook(hook)


def first_examples(datamodule: CoITDataModule, count: int, world_size: int = 1) -> list[dict]:
    """The first ``count`` training examples of epoch 0: each rank's first ``count / world_size``
    in rank order (the data of the first optimizer step when each rank takes that many)."""
    per_rank = count // world_size
    return [
        e
        for rank in range(world_size)
        for e in datamodule.train_examples(per_rank, rank, world_size)
    ]


def reference_gradients(
    model: str, examples: list[dict], pad_token_id: int, per_batch: int | None = None
):
    """Gradients of the response-token mean over ``examples`` as one batch; with ``per_batch``,
    the mean of per-micro-batch means instead (what a naive implementation computes)."""
    module = XLlamaModule(model)
    module.configure_model()
    collate = PadCollator(pad_token_id)
    chunks = (
        [examples]
        if per_batch is None
        else [examples[i : i + per_batch] for i in range(0, len(examples), per_batch)]
    )
    for chunk in chunks:
        loss_sum, tokens = module.response_loss(collate(chunk))
        (loss_sum / tokens / len(chunks)).backward()
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
