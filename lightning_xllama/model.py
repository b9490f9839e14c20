"""The LightningModule: full-parameter instruction tuning of a Hugging Face causal LM.

The loss of an optimizer step is the sum of the response tokens' losses divided by the number
of response tokens in the whole step, over every accumulation micro-batch and every rank, so a
step's gradient does not depend on how its data is split. Lightning divides each micro-batch's
loss by the accumulation count and DDP, FSDP and FSDP2 (its reduce-scatter) average gradients over
the ranks; the module returns summed losses and, once the step's gradients are complete
(``on_before_optimizer_step``, before clipping), rescales them by
``accumulation * world_size / step_response_tokens``.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Callable, Optional

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric

from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.data.packing import additive_mask
from lightning_xllama.evaluation.generation import generate
from lightning_xllama.hf_loading import check_model_path, load_tokenizer
from lightning_xllama.strategies import compare_shapes, empty_model, load_into_shards, shard_fsdp2

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
        self.parameter_shapes: dict[str, tuple[int, ...]] = {}
        """Global shapes of the checkpointed tensors, recorded before sharding (to check checkpoints)."""
        self._rng_to_restore: Optional[dict] = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.model_name_or_path, self.hparams.trust_remote_code)
        return self._tokenizer

    def configure_model(self) -> None:
        """Build the model where the strategy needs it, without a full copy of the weights per rank.

        - ``ModelParallelStrategy`` (FSDP2): every rank builds the model on the meta device, shards
          it per decoder layer and then at the root, and receives its shards of rank 0's weights.
        - ``DecoderFSDPStrategy`` (FSDP1): rank 0 loads the weights on CPU, the others build on the
          meta device; FSDP broadcasts rank 0's weights as it wraps the layers.
        - otherwise (one device, DDP): ``from_pretrained`` on every rank.
        """
        if self.model is not None:
            return
        h = self.hparams
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, ModelParallelStrategy):
            self.model = self._fsdp2_model(strategy)
        elif isinstance(strategy, FSDPStrategy) and strategy.kwargs.get("sync_module_states") and strategy.global_rank:
            self.model = empty_model(h.model_name_or_path, h.attn_implementation, h.trust_remote_code)
        else:
            from transformers import AutoModelForCausalLM

            self.model = AutoModelForCausalLM.from_pretrained(
                h.model_name_or_path,
                attn_implementation=h.attn_implementation,
                trust_remote_code=h.trust_remote_code,
                use_safetensors=None,
            )
        self.model.train()  # from_pretrained returns eval mode; Lightning switches modes per loop
        if h.gradient_checkpointing and not self.model.is_gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        self.parameter_shapes = {f"model.{k}": tuple(v.shape) for k, v in self.model.state_dict().items()}

    def _fsdp2_model(self, strategy: ModelParallelStrategy):
        """FSDP2 over the data-parallel ranks: meta-device build, ``fully_shard``, weights into shards.

        Settings come from :class:`~lightning_xllama.strategies.DecoderFSDP2Strategy`; under a plain
        ``ModelParallelStrategy`` the layers compute in fp32.
        """
        h = self.hparams
        if self.device_mesh["tensor_parallel"].size() > 1:
            raise ValueError(
                "XLlamaModule shards with FSDP2 only (no tensor parallelism), but the strategy's mesh has "
                f"tensor_parallel_size {self.device_mesh['tensor_parallel'].size()}. Use "
                "lightning_xllama.strategies.DecoderFSDP2Strategy, or ModelParallelStrategy with "
                "tensor_parallel_size: 1 and data_parallel_size set to the number of devices."
            )
        model = empty_model(h.model_name_or_path, h.attn_implementation, h.trust_remote_code)
        if getattr(strategy, "activation_checkpointing", False):
            enable_gradient_checkpointing(model)
        shard_fsdp2(
            model, self.device_mesh["data_parallel"],
            getattr(strategy, "param_dtype", "fp32"), getattr(strategy, "reduce_dtype", "fp32"),
        )
        load_into_shards(model, h.model_name_or_path, strategy.root_device, h.trust_remote_code)
        return model

    # --- training ---------------------------------------------------------------------
    def response_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over response tokens, and their count.

        A packed batch (``data/packing.py``) brings per-example ``position_ids`` and a boolean
        4D block-diagonal mask; eager attention adds its mask to the scores, so it gets the
        additive form.
        """
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "position_ids" in batch:
            inputs.update(position_ids=batch["position_ids"], use_cache=False)
            if self.model.config._attn_implementation == "eager":
                inputs["attention_mask"] = additive_mask(inputs["attention_mask"], torch.float32)
        logits = self.model(**inputs).logits
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
        # The fused kernel (one launch for all tensors) on plain CPU/CUDA tensors; sharded
        # (DTensor) parameters keep the default implementation.
        fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for p in decay + no_decay)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=h.learning_rate, betas=(h.adam_beta1, h.adam_beta2), eps=h.adam_eps, fused=fused or None,
        )
        factor = WarmupCosine(h.warmup_ratio, h.min_lr_ratio, lambda: self.trainer.estimated_stepping_batches)
        # A plain function, so LambdaLR's state_dict does not try to save the module with it.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add every rank's RNG state (Lightning saves none) and :meth:`training_record` (the
        export's model card reads it). Every rank runs this hook."""
        checkpoint["rng_states"] = _gather(_rng_state())
        checkpoint.update(self.training_record())

    def training_record(self) -> dict:
        """How the run is set up (ranks, accumulation, effective batch...) and the latest
        validation scores, as plain values."""
        trainer = self.trainer
        settings = {
            "world_size": trainer.world_size,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "precision": str(trainer.precision),
            "strategy": type(trainer.strategy).__name__,
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "gradient_clip_val": trainer.gradient_clip_val,
        }
        batch_size = getattr(trainer.datamodule, "hparams", {}).get("batch_size")
        if batch_size is not None:
            settings["batch_size_per_device"] = batch_size
            settings["effective_batch_size"] = batch_size * trainer.accumulate_grad_batches * trainer.world_size
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        return {"training_settings": settings, "evaluation": scores}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Check the weights' shapes (a single-file checkpoint under a plain strategy; the sharding
        strategies check before they load) and keep this rank's RNG state for the first step."""
        if "state_dict" in checkpoint and self.parameter_shapes:
            model_state = {k: v.shape for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
            compare_shapes(model_state, self.parameter_shapes, "the checkpoint")
        states = checkpoint.get("rng_states")
        if not states:
            return
        world_size = self._trainer.world_size if self._trainer is not None else 1
        if len(states) != world_size:
            rank_zero_warn(
                f"the checkpoint holds the RNG states of {len(states)} ranks, this run has {world_size}: "
                "random streams continue from the seed, not from the checkpoint"
            )
            return
        self._rng_to_restore = states[self.global_rank]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Restore the RNG state of a resumed run here, just before its first step: starting the
        data loader draws from the global generator, which the uninterrupted run did earlier."""
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None


def enable_gradient_checkpointing(model) -> None:
    """Hugging Face's per-decoder-layer checkpointing, non-reentrant (parameter names unchanged)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


def _rng_state() -> dict:
    """This process's random generators, as plain values and tensors (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather(obj) -> list:
    """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
