"""Two micro-batches with 3 and 1 response tokens, and, run as a script, one optimizer step of
them on 2 CPU ranks (DDP, gloo), one micro-batch each, under a loss normalisation: the stepped
gradients and the logged loss saved per rank."""

import sys

import torch

from lightning_xllama.data.encoding import IGNORE_INDEX

PROMPT_TOKENS = (3, 5)
"""Masked positions at the start of each 6-token micro-batch: 3 and 1 response tokens are left."""


def micro_batches(vocab_size: int) -> list[dict]:
    """Two one-row micro-batches of 6 tokens, the first 3 and 5 positions masked out."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for masked in PROMPT_TOKENS:
        input_ids = torch.randint(3, vocab_size, (1, 6), generator=generator)
        labels = input_ids.clone()
        labels[:, :masked] = IGNORE_INDEX
        batches.append(
            {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
        )
    return batches


if __name__ == "__main__":
    from torch.utils.data import DataLoader
    from training_utils import GradientCapture, quiet_trainer

    from lightning_xllama.training.module import XLlamaModule

    model_path, rule, out = sys.argv[1:4]
    module = XLlamaModule(model_path, loss_normalisation=rule)
    batches = micro_batches(module.tokenizer.vocab_size)
    capture = GradientCapture()
    trainer = quiet_trainer(devices=2, strategy="ddp", max_steps=1, callbacks=[capture])
    # the distributed sampler gives rank r the micro-batch r
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    loss = trainer.callback_metrics.get("train/loss")
    torch.save(
        {"grads": capture.steps[0], "loss": None if loss is None else float(loss)},
        f"{out}.rank{trainer.global_rank}.pt",
    )
