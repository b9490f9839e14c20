"""The LightningModule: full-parameter instruction tuning of a Hugging Face causal LM.

The loss of an optimizer step is the sum of the response tokens' losses divided by the number
of response tokens in the whole step, over every accumulation micro-batch and every rank, so a
step's gradient does not depend on how its data is split. Lightning divides each micro-batch's
loss by the accumulation count and DDP/FSDP average gradients over ranks; the module returns
summed losses and, once the step's gradients are complete (``on_before_optimizer_step``, before
clipping), rescales them by ``accumulation * world_size / step_response_tokens``.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.evaluation.generation import generate
from lightning_xllama.hf_loading import check_model_path, load_tokenizer

log = logging.getLogger(__name__)


class WarmupCosine:
    """LR factor: linear warm-up from 0, then cosine decay to ``min_ratio``.

    ``total_steps`` is called at the first step, not in ``configure_optimizers``: asking the
    trainer for its step count there resets a restored data loader.
    """

    def __init__(self, warmup_ratio: float, min_ratio: float, total_steps: Callable[[], float]):
        self.warmup_ratio, self.min_ratio = warmup_ratio, min_ratio
        self._total_steps_fn = total_steps
        self._total: Optional[int] = None

    @property
    def total_steps(self) -> int:
        if self._total is None:
            self._total = max(1, int(self._total_steps_fn()))
        return self._total

    def __call__(self, step: int) -> float:
        if step == 0:
            return 0.0 if self.warmup_ratio > 0 else 1.0
        warmup = math.ceil(self.warmup_ratio * self.total_steps)
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class XLlamaModule(L.LightningModule):
    """Instruction tuning of any causal LM, defaults as published for x-LLaMA.

    Args:
        model_name_or_path: Hugging Face model folder or hub name (LLaMA-7B and its family).
        learning_rate: peak learning rate of AdamW (the paper: 2e-5).
        weight_decay: AdamW weight decay, not applied to biases and norms (the paper: 0).
        warmup_ratio: share of the optimizer steps spent warming up linearly (the paper: 0.03).
        min_lr_ratio: learning rate at the end of the cosine decay, as a share of the peak.
        adam_beta1: AdamW beta1.
        adam_beta2: AdamW beta2.
        adam_eps: AdamW epsilon.
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        attn_implementation: ``sdpa``, ``eager`` or ``flash_attention_2``.
        trust_remote_code: allow model code from the hub; off unless you trust the source.
        max_new_tokens: generation length for ``predict``.
        num_beams: beam size for ``predict`` (1 = greedy).
    """

    def __init__(
        self,
        model_name_or_path: str,
        learning_rate: float = 2e-5,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.03,
        min_lr_ratio: float = 0.0,
        adam_beta1: float = 0.9,
        adam_beta2: float = 0.999,
        adam_eps: float = 1e-8,
        gradient_checkpointing: bool = False,
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        max_new_tokens: int = 128,
        num_beams: int = 1,
    ):
        super().__init__()
        check_model_path(model_name_or_path)
        self.save_hyperparameters()
        self.model = None
        self._tokenizer = None
        self.val_loss = MeanMetric()
        self._step_loss = torch.zeros(())
        self._step_tokens = torch.zeros((), dtype=torch.long)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.model_name_or_path, self.hparams.trust_remote_code)
        return self._tokenizer

    def configure_model(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModelForCausalLM

        h = self.hparams
        self.model = AutoModelForCausalLM.from_pretrained(
            h.model_name_or_path,
            attn_implementation=h.attn_implementation,
            trust_remote_code=h.trust_remote_code,
            use_safetensors=None,
        )
        self.model.train()  # from_pretrained returns eval mode; Lightning switches modes per loop
        if h.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.config.use_cache = False

    # --- training ---------------------------------------------------------------------
    def response_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over response tokens, and their count."""
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        loss_sum = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return loss_sum, (labels != IGNORE_INDEX).sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss_sum, tokens = self.response_loss(batch)
        self._step_loss = self._step_loss.to(loss_sum.device) + loss_sum.detach()
        self._step_tokens = self._step_tokens.to(tokens.device) + tokens
        return loss_sum

    def on_before_optimizer_step(self, optimizer) -> None:
        totals = self.trainer.strategy.reduce(
            torch.stack([self._step_loss.float(), self._step_tokens.float()]), reduce_op="sum"
        )
        loss_sum, tokens = totals[0], totals[1].clamp(min=1)
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / tokens
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(scale.to(parameter.grad.dtype))
        self.log("train/loss", loss_sum / tokens, prog_bar=True, rank_zero_only=True)
        self.log("train/response_tokens", tokens, rank_zero_only=True)
        self._step_loss = torch.zeros_like(self._step_loss)
        self._step_tokens = torch.zeros_like(self._step_tokens)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss_sum, tokens = self.response_loss(batch)
        if tokens > 0:
            self.val_loss.update(loss_sum / tokens, weight=tokens)
        self.log("val/loss", self.val_loss, prog_bar=True)

    def predict_step(self, batch: list[dict], batch_idx: int) -> list[dict]:
        h = self.hparams
        # The predict loader already gives each rank its own share: generate locally.
        responses = generate(
            self.model, self.tokenizer, [r["prompt"] for r in batch], batch_size=len(batch),
            max_new_tokens=h.max_new_tokens, num_beams=h.num_beams,
            synced_gpus=self.trainer.world_size > 1 and self.trainer.strategy.__class__.__name__ != "DDPStrategy",
        )
        return [
            {"id": r["id"], "instruction": r["instruction"], "input": r["input"], "response": text}
            for r, text in zip(batch, responses)
        ]

    def configure_optimizers(self):
        h = self.hparams
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=h.learning_rate, betas=(h.adam_beta1, h.adam_beta2), eps=h.adam_eps,
        )
        factor = WarmupCosine(h.warmup_ratio, h.min_lr_ratio, lambda: self.trainer.estimated_stepping_batches)
        # A plain function, so LambdaLR's state_dict does not try to save the module with it.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
