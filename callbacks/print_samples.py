"""An example user callback: print the model's answers to a few fixed prompts on each validation.

Not part of the package: copy it, or run from the repository root (``python -m`` puts the current
folder on the import path), and load it from a config with ``callbacks.print_samples.PrintSamples``
(see callbacks/README.md). It shows the pieces a plug-in needs: typed, documented ``__init__``
arguments (they become CLI flags and YAML keys), a Lightning hook, and the package's batched
generation, which every rank must join under DDP/FSDP.
"""

from __future__ import annotations

import lightning as L

from lightning_xllama.evaluation.generation import generate_on_all_ranks
from lightning_xllama.prompts import alpaca_prompt


class PrintSamples(L.Callback):
    """Generate answers to ``prompts`` at the end of every validation pass and print them.

    Args:
        prompts: instructions to answer, each wrapped in the Alpaca template.
        max_new_tokens: generation length limit.
        header: printed above the answers, to tell several instances apart.
    """

    def __init__(
        self, prompts: list[str], max_new_tokens: int = 32, header: str = "sample answers"
    ):
        if not prompts:
            raise ValueError("PrintSamples needs at least one prompt")
        self.prompts, self.max_new_tokens, self.header = list(prompts), max_new_tokens, header

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # every rank generates (a rank that skipped the forward passes would hang the others) ...
        answers = generate_on_all_ranks(
            pl_module.model,
            pl_module.tokenizer,
            [alpaca_prompt(p) for p in self.prompts],
            max_new_tokens=self.max_new_tokens,
        )
        # ... and one prints
        if trainer.is_global_zero:
            print(f"\n[{self.header}] step {trainer.global_step}")
            for prompt, answer in zip(self.prompts, answers):
                print(f"  {prompt!r} -> {answer!r}")
