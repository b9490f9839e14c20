"""The LightningModule: full-parameter instruction tuning of a Hugging Face causal LM.

The loss normalisation (``loss_normalisation``), by default ``step_tokens``: the loss of an
optimizer step is the sum of the response tokens' losses divided by the number of response tokens
in the whole step, over every accumulation micro-batch and every rank, so a step's gradient does
not depend on how its data is split. Lightning divides each micro-batch's loss by the accumulation
count and DDP, FSDP and FSDP2 (its reduce-scatter) average gradients over the ranks; the module
returns summed losses and, once the step's gradients are complete (``on_before_optimizer_step``,
before clipping), rescales them by ``accumulation * world_size / step_response_tokens``.

``micro_batch_mean`` is the Hugging Face ``Trainer``'s rule (the paper's code, transformers 4.29):
each micro-batch's loss is the mean over its own response tokens, and those means are averaged
over the accumulation micro-batches (Lightning's division) and the ranks (the gradient average),
so a token of a micro-batch with few response tokens weighs more.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Literal, Optional, Sequence, get_args

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric

from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.evaluation.generation import generate
from lightning_xllama.runtime import distributed
from lightning_xllama.runtime.hf_loading import check_model_path, load_tokenizer
from lightning_xllama.training import rng_state
from lightning_xllama.training.attention import packed_attention_inputs, register_attention
from lightning_xllama.training.building import ModelSettings, build_model
from lightning_xllama.training.chunked_loss import ChunkedLossHead
from lightning_xllama.training.clipping import clip_grad_norm, grad_norm
from lightning_xllama.training.divergence import WHAT_TO_TRY, TrainingDiverged
from lightning_xllama.training.lora import (
    LoraQuantize,
    check_lora_arguments,
    checkpointed_keys,
    parameter_counts,
)
from lightning_xllama.training.resume_settings import keep_optimizer_settings
from lightning_xllama.training.schedule import WarmupCosine
from lightning_xllama.training.strategies import compare_shapes

log = logging.getLogger(__name__)

AttnImplementation = Literal[
    "sdpa", "eager", "flex_attention", "sdpa_varlen", "flash_attention_2", "flash_attention_3"
]
ATTN_IMPLEMENTATIONS = get_args(AttnImplementation)
OnNonfinite = Literal["stop", "skip_step"]
LossNormalisation = Literal["step_tokens", "micro_batch_mean"]


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
        attn_implementation: how attention is computed, and how a packed row's examples are kept
            apart (``lightning_xllama/training/attention.py``): ``flex_attention`` (GPUs: document-masked
            blocks), ``flash_attention_2`` (needs flash-attn), ``sdpa_varlen`` (CPUs: sdpa per
            example), or ``sdpa``/``eager`` (a dense block-diagonal mask over the whole row).
        loss_chunk_size: positions whose logits are built at once by the loss (its gradient is
            computed chunk by chunk in the forward pass, so fp32 logits for the whole batch never
            exist); None builds the full logits, as Hugging Face's loss does.
        loss_normalisation: what a step's summed response-token loss is divided by.
            ``step_tokens``: the response tokens of the whole optimizer step (every accumulation
            micro-batch, every rank), so every token weighs the same and the gradient does not
            depend on how the step's examples are split. ``micro_batch_mean``: the Hugging Face
            ``Trainer``'s rule, the paper's run: each micro-batch's mean over its own response
            tokens, averaged over the accumulation micro-batches and the ranks (a micro-batch
            without response tokens counts as 0, where the Trainer's loss would be NaN). Both
            log ``train/loss`` as their rule's loss of the step (``micro_batch_mean``: the mean
            of the micro-batch means, as the Trainer logs it) and ``train/response_tokens``.
        compile_layers: ``torch.compile`` each decoder layer (fused kernels; compiles on the first
            steps, and again for each new row width: pad packed rows to a multiple). One
            device, DDP or FSDP2 (FSDP1's mixed precision and torch.compile do not mix).
        trust_remote_code: allow model code from the hub; off unless you trust the source.
        max_new_tokens: generation length for ``predict``.
        num_beams: beam size for ``predict`` (1 = greedy).
        lora_rank: rank of LoRA adapters (``lightning_xllama/training/lora.py``, needs the ``lora`` extra):
            the base weights stay frozen and only the adapters train, are checkpointed and
            exported; None tunes every parameter, as the paper does.
        lora_alpha: LoRA scaling numerator: the adapters' update is scaled by alpha / rank.
        lora_dropout: dropout on the adapters' input.
        lora_target_modules: names of the ``nn.Linear`` modules in the decoder layers that get
            adapters, e.g. ``[q_proj, v_proj]``; None: all of them (attention and MLP projections).
        lora_quantize: ``nf4``: QLoRA, the frozen base in 4-bit NF4 (bitsandbytes, CUDA, one device
            or DDP); None: the base in the trainer's precision.
        on_nonfinite: what an optimizer step whose loss or gradient norm (after clipping) is NaN
            or infinite does. ``stop``: raise :class:`~lightning_xllama.training.divergence.TrainingDiverged`
            naming the step and the learning rate (the CLI exits 1, ``run.json`` says
            ``diverged``, ``HFExport`` writes nothing). ``skip_step``: leave the weights and the
            optimizer state as they are (the step still counts in ``global_step`` and the
            learning-rate schedule), count it (``train/skipped_steps``, ``skipped_steps`` in
            ``run.json``) and stop after ``max_consecutive_skips`` in a row. Under fp16 the loss
            scaler already skips steps whose gradients overflow: only the loss is checked there.
        max_consecutive_skips: with ``skip_step``, the skipped steps in a row that stop training
            as diverged (a finite step resets the count).
        optimizer: another optimizer than AdamW, as ``{class_path, init_args}``; the CLI's
            ``--optimizer torch.optim.SGD --optimizer.lr 0.1`` sets it. It is built on the
            trainable parameters (LoRA: the adapters), biases and norms in a group without weight
            decay, with its own ``init_args`` (learning rate included): ``learning_rate``,
            ``weight_decay`` and the ``adam_*`` settings apply to the default AdamW only. None: AdamW.
        lr_scheduler: another schedule than warm-up + cosine, as ``{class_path, init_args}`` (the
            CLI's ``--lr_scheduler``), stepped after every optimizer step (``ReduceLROnPlateau``:
            after every validation, on its ``monitor``, default ``val/loss``). None: linear
            warm-up over ``warmup_ratio`` of the steps, then cosine decay to ``min_lr_ratio`` of
            the optimizer's learning rate, whichever the optimizer.
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
        attn_implementation: AttnImplementation = "sdpa",
        loss_chunk_size: Optional[int] = 1024,
        loss_normalisation: LossNormalisation = "step_tokens",
        compile_layers: bool = False,
        trust_remote_code: bool = False,
        max_new_tokens: int = 128,
        num_beams: int = 1,
        lora_rank: Optional[int] = None,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.05,
        lora_target_modules: Optional[Sequence[str]] = None,
        lora_quantize: Optional[LoraQuantize] = None,
        on_nonfinite: OnNonfinite = "stop",
        max_consecutive_skips: int = 10,
        optimizer: Optional[dict] = None,
        lr_scheduler: Optional[dict] = None,
    ):
        super().__init__()
        # plain values in the saved hyperparameters (the CLI passes namespaces)
        optimizer = class_spec(optimizer, "optimizer", torch.optim.Optimizer)
        lr_scheduler = class_spec(lr_scheduler, "lr_scheduler", LR_SCHEDULER_TYPES)
        check_model_path(model_name_or_path)
        check_lora_arguments(
            lora_rank, lora_alpha, lora_dropout, lora_target_modules, lora_quantize
        )
        if lora_target_modules is not None:  # a plain list in the saved hyperparameters
            lora_target_modules = list(lora_target_modules)
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}"
            )

        def whole(v) -> bool:  # int or numpy integer; bool is refused below
            return hasattr(v, "__index__")

        # Ranges checked when the module is built: a negative learning rate would otherwise
        # train quietly in the wrong direction. NaN fails every comparison, so it is refused too.
        ranges = {
            "learning_rate": (learning_rate, "> 0", lambda v: v > 0),
            "weight_decay": (weight_decay, ">= 0", lambda v: v >= 0),
            "warmup_ratio": (warmup_ratio, "in [0, 1)", lambda v: 0 <= v < 1),
            "min_lr_ratio": (min_lr_ratio, "in [0, 1]", lambda v: 0 <= v <= 1),
            "adam_beta1": (adam_beta1, "in [0, 1)", lambda v: 0 <= v < 1),
            "adam_beta2": (adam_beta2, "in [0, 1)", lambda v: 0 <= v < 1),
            "adam_eps": (adam_eps, "> 0", lambda v: v > 0),
            "loss_chunk_size": (
                loss_chunk_size,
                "a whole number >= 1 (positions) or None",
                lambda v: v is None or whole(v) and v >= 1,
            ),
            "loss_normalisation": (
                loss_normalisation,
                " or ".join(get_args(LossNormalisation)),
                lambda v: v in get_args(LossNormalisation),
            ),
            "max_new_tokens": (
                max_new_tokens,
                "a whole number >= 1",
                lambda v: whole(v) and v >= 1,
            ),
            "num_beams": (
                num_beams,
                "a whole number >= 1",
                lambda v: whole(v) and v >= 1,
            ),
            "on_nonfinite": (
                on_nonfinite,
                "stop or skip_step",
                lambda v: v in get_args(OnNonfinite),
            ),
            "max_consecutive_skips": (
                max_consecutive_skips,
                "a whole number >= 1",
                lambda v: whole(v) and v >= 1,
            ),
        }
        for name, (value, expected, in_range) in ranges.items():
            try:
                valid = not isinstance(value, bool) and bool(in_range(value))
            except TypeError:  # not a number at all
                valid = False
            if not valid:
                raise ValueError(f"XLlamaModule: {name} must be {expected}, got {value!r}")
        register_attention()
        self.save_hyperparameters()
        self.model = None
        self._tokenizer = None
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self._step_loss = torch.zeros(())
        """The step's summed loss so far (``micro_batch_mean``: the sum of micro-batch means)."""
        self._step_tokens = torch.zeros((), dtype=torch.long)
        self._step_micro_batches = 0
        self._step_mean_loss: Optional[torch.Tensor] = None
        """The step's reduced per-token loss, checked for finiteness after clipping."""
        self.skipped_steps = 0
        """Optimizer steps skipped for a non-finite loss or gradient norm (``skip_step``)."""
        self._consecutive_skips = 0
        self.parameter_shapes: dict[str, tuple[int, ...]] = {}
        """Global shapes of the checkpointed tensors, recorded before sharding (to check checkpoints)."""
        self.parameter_counts: Optional[tuple[int, int]] = None
        """Trainable and total parameters of the built model."""
        self._rng_to_restore: Optional[dict] = None
        self._optimizer_settings: list[dict] = []
        """Each parameter group's settings as ``configure_optimizers`` built them (resume)."""

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(
                self.hparams.model_name_or_path, self.hparams.trust_remote_code
            )
        return self._tokenizer

    def configure_model(self) -> None:
        """Build the model where the strategy needs it, without a full copy of the weights per
        rank (see :mod:`lightning_xllama.training.building`), and record its tensors' global shapes."""
        if self.model is not None:
            return
        strategy = self._trainer.strategy if self._trainer is not None else None
        settings = ModelSettings(
            **{f.name: self.hparams[f.name] for f in dataclasses.fields(ModelSettings)}
        )
        self.model = build_model(settings, strategy, self.device_mesh)
        state = self.model.state_dict()
        self.parameter_shapes = {
            f"model.{k}": tuple(state[k].shape) for k in checkpointed_keys(self.model)
        }
        # Checkpoints hold the trainable tensors only (LoRA: the adapters; the frozen base comes from
        # model_name_or_path): loading is then partial, and the shape check above keeps it exact.
        self.strict_loading = len(self.parameter_shapes) == len(state)
        self.parameter_counts = parameter_counts(self.model)
        trainable, total = self.parameter_counts
        rank_zero_info(
            f"XLlamaModule: {trainable:,} trainable parameters of {total:,} "
            f"({100 * trainable / total:.3g}%)"
            + (f", LoRA rank {self.hparams.lora_rank}" if self.hparams.lora_rank else "")
        )

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``, with ``trust_remote_code`` taken from the caller
        (off unless passed), never from the checkpoint's hyperparameters: running a model folder's
        Python is the user's decision."""
        kwargs.setdefault("trust_remote_code", False)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_fit_start(self) -> None:
        """Log the parameter counts with the hyperparameters (logged before the model is built)."""
        if self.parameter_counts is not None:
            trainable, total = self.parameter_counts
            for logger in self.loggers:
                logger.log_hyperparams(
                    {"trainable_parameters": trainable, "total_parameters": total}
                )

    def on_train_start(self) -> None:
        """A run started from a checkpoint trains with its own settings: restoring the optimizer
        and schedule brought back the checkpoint's learning rate, betas, epsilon and weight decay;
        put this run's back, keeping the schedule's progress."""
        if self.trainer.ckpt_path is None:
            return
        if self.hparams.get("optimizer") is None:
            keep_optimizer_settings(self.trainer, self.hparams)
        else:
            keep_group_settings(self.trainer, self._optimizer_settings)

    # --- training ---------------------------------------------------------------------
    def response_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over response tokens, and their count.

        A packed batch (``data/packing.py``) brings per-example ``position_ids`` and the
        examples' boundaries; ``attention.packed_attention_inputs`` turns them into what the
        attention implementation needs to keep the examples apart.

        The KV cache is off: a real model folder's config turns it on, and under activation
        checkpointing a cache filled by the forward pass is filled again by the recomputation.
        """
        inputs = {"input_ids": batch["input_ids"], "use_cache": False}
        if "position_ids" in batch:
            inputs.update(packed_attention_inputs(batch, self.model.config, torch.float32))
        else:
            inputs["attention_mask"] = batch["attention_mask"]
        labels = batch["labels"]
        head = self.model.get_output_embeddings()
        if not isinstance(head, ChunkedLossHead):
            logits = self.model(**inputs).logits
            loss_sum = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                labels[:, 1:].flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        else:  # computed inside the model's forward, where sharded weights are gathered
            with head.computing_loss(
                labels, self.hparams.loss_chunk_size, positions=batch.get("loss_positions")
            ):
                self.model(**inputs)
            loss_sum = head.take_loss()
        return loss_sum, (labels[:, 1:] != IGNORE_INDEX).sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The micro-batch's summed loss (``step_tokens``: rescaled once the step is complete) or
        its mean over its response tokens (``micro_batch_mean``)."""
        loss, tokens = self.response_loss(batch)
        if self.hparams.loss_normalisation == "micro_batch_mean":
            loss = loss / tokens.clamp(min=1)
        self._step_loss = self._step_loss.to(loss.device) + loss.detach()
        self._step_tokens = self._step_tokens.to(tokens.device) + tokens
        self._step_micro_batches += 1
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """``step_tokens``: turn the step's summed gradients into the per-token mean (one fused
        multiply over all gradients, the token count never leaving the device) before clipping
        and the step. ``micro_batch_mean``: the gradients are already the Trainer's. Both log
        the step's loss under their rule."""
        totals = self.trainer.strategy.reduce(
            torch.stack(
                [
                    self._step_loss.float(),
                    self._step_tokens.float(),
                    torch.tensor(float(self._step_micro_batches), device=self._step_loss.device),
                ]
            ),
            reduce_op="sum",
        )
        loss_sum, tokens, micro_batches = totals[0], totals[1].clamp(min=1), totals[2]
        if self.hparams.loss_normalisation == "micro_batch_mean":
            self._step_mean_loss = loss_sum / micro_batches.clamp(min=1)
        else:
            scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / tokens
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, scale)
            self._step_mean_loss = loss_sum / tokens
        # Logged as device tensors, read only when the logger writes (every log_every_n_steps):
        # a progress-bar value would be read on the host, waiting for the device, every step.
        self.log("train/loss", self._step_mean_loss, rank_zero_only=True)
        self.log("train/response_tokens", tokens, rank_zero_only=True)
        self._step_loss = torch.zeros_like(self._step_loss)
        self._step_tokens = torch.zeros_like(self._step_tokens)
        self._step_micro_batches = 0

    def configure_gradient_clipping(
        self,
        optimizer,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clip the rescaled gradients by their global norm under every strategy and precision,
        then check the step is finite (:meth:`check_finite_step`).

        Lightning's own clipping refuses a fused optimizer under mixed precision and FSDP's
        precision plugin refuses norm clipping; bf16 has no loss scaler (fp16 gets an unfused
        optimizer, unscaled before this hook), so clipping here is exact. FSDP1 clips through
        its root module, FSDP2 and the rest through the DTensor-aware total norm.
        """
        parameters = [p for p in self.parameters() if p.grad is not None]
        strategy = self.trainer.strategy
        norm = None  # the norm before clipping: finite exactly when the clipped one is
        if gradient_clip_val and gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val, foreach=True)
        elif gradient_clip_val:
            if isinstance(strategy, FSDPStrategy):
                norm = strategy.model.clip_grad_norm_(gradient_clip_val)
            else:
                norm = clip_grad_norm(parameters, gradient_clip_val)
            self.log("train/grad_norm", norm, rank_zero_only=True)
        if norm is None and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            norm = grad_norm(parameters)
            if isinstance(strategy, FSDPStrategy):  # each rank holds a shard of the gradients
                norm = strategy.reduce(norm.square(), reduce_op="sum").sqrt()
        self.check_finite_step(optimizer, norm)

    def check_finite_step(self, optimizer, norm: Optional[torch.Tensor]) -> None:
        """Stop, or skip the optimizer step (``on_nonfinite``), when the step's loss or gradient
        norm is NaN or infinite. One host read a step: both values are reduced over the ranks, so
        every rank decides the same. A skipped step has its gradients set to None, so the
        optimizer leaves the weights and its state as they are."""
        if self._step_mean_loss is None:
            return
        values = [self._step_mean_loss.float()]
        if norm is not None:  # None under fp16: its loss scaler skips overflowing steps itself
            values.append(norm.float().to(values[0].device))
        if bool(torch.isfinite(torch.stack(values)).all()):
            self._consecutive_skips = 0
            return
        step = self.trainer.global_step + 1  # the step being taken, counted from 1
        learning_rate = optimizer.param_groups[0]["lr"]
        found = f"the loss is {float(values[0]):.4g}"
        if norm is not None:
            found += f" and the gradient norm {float(values[1]):.4g}"
        if self.hparams.on_nonfinite == "stop":
            raise TrainingDiverged(
                f"training diverged at optimizer step {step} (learning rate {learning_rate:.3g}): "
                f"{found}; {WHAT_TO_TRY}"
            )
        self._consecutive_skips += 1
        self.skipped_steps += 1
        for parameter in self.parameters():
            parameter.grad = None
        limit = self.hparams.max_consecutive_skips
        if self._consecutive_skips >= limit:
            raise TrainingDiverged(
                f"training diverged: optimizer steps {step - limit + 1}-{step} were all skipped "
                f"(max_consecutive_skips={limit}; learning rate {learning_rate:.3g}); at step "
                f"{step} {found}; {WHAT_TO_TRY}"
            )
        rank_zero_warn(
            f"optimizer step {step} skipped (learning rate {learning_rate:.3g}): {found} "
            f"({self._consecutive_skips} in a row, {self.skipped_steps} in all; training stops "
            f"at max_consecutive_skips={limit})"
        )
        self.log("train/skipped_steps", float(self.skipped_steps), rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss_sum, tokens = self.response_loss(batch)
        if tokens > 0:
            self.val_loss.update(loss_sum / tokens, weight=tokens)
        self.log("val/loss", self.val_loss, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """``test``: the loss on the held-out examples; the evaluation callbacks measure their own
        test sets when the pass ends (``EvaluationCallback.on_test_epoch_end``)."""
        loss_sum, tokens = self.response_loss(batch)
        if tokens > 0:
            self.test_loss.update(loss_sum / tokens, weight=tokens)
        self.log("test/loss", self.test_loss)

    def predict_step(self, batch: list[dict], batch_idx: int) -> list[dict]:
        h = self.hparams
        # The predict loader already gives each rank its own share: generate locally.
        responses = generate(
            self.model,
            self.tokenizer,
            [r["prompt"] for r in batch],
            batch_size=len(batch),
            max_new_tokens=h.max_new_tokens,
            num_beams=h.num_beams,
            synced_gpus=distributed.shards_model(self.trainer),
        )
        return [
            {"id": r["id"], "instruction": r["instruction"], "input": r["input"], "response": text}
            for r, text in zip(batch, responses)
        ]

    def configure_optimizers(self):
        """AdamW (or ``optimizer``) on the trainable parameters, biases and norms without weight
        decay, and the warm-up + cosine schedule (or ``lr_scheduler``), stepped every optimizer step."""
        h = self.hparams
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)
        if h.get("optimizer") is not None:
            groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
            optimizer = build_from_spec(h.optimizer, [g for g in groups if g["params"]])
            schedule = self._schedule(optimizer)
            self._optimizer_settings = [
                {k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups
            ]
            return {"optimizer": optimizer, "lr_scheduler": schedule}
        # The fused kernel (one launch for all tensors) on plain CPU/CUDA tensors; sharded
        # (DTensor) parameters keep the default implementation, and so does fp16 (its loss
        # scaler must unscale the gradients before they are clipped).
        fused = all(
            type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda")
            for p in decay + no_decay
        )
        fused = fused and getattr(self.trainer.precision_plugin, "scaler", None) is None
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": h.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=h.learning_rate,
            betas=(h.adam_beta1, h.adam_beta2),
            eps=h.adam_eps,
            fused=fused or None,
        )
        return {"optimizer": optimizer, "lr_scheduler": self._schedule(optimizer)}

    def _schedule(self, optimizer) -> dict:
        """The schedule of ``optimizer`` as Lightning's scheduler config: ``lr_scheduler`` when
        set, else warm-up + cosine; stepped every optimizer step (``ReduceLROnPlateau``: after
        every validation)."""
        h = self.hparams
        if h.get("lr_scheduler") is not None:
            schedule = build_from_spec(h.lr_scheduler, optimizer)
            if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitor = getattr(schedule, "monitor", None) or "val/loss"
                return {"scheduler": schedule, "monitor": monitor, "interval": "epoch"}
            return {"scheduler": schedule, "interval": "step"}
        factor = WarmupCosine(
            h.warmup_ratio, h.min_lr_ratio, lambda: self.trainer.estimated_stepping_batches
        )
        # A plain function, so LambdaLR's state_dict does not try to save the module with it.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))
        return {"scheduler": schedule, "interval": "step"}

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add every rank's RNG state (Lightning saves none) and :meth:`training_record` (the
        export's model card reads it), and keep only the trainable tensors. Every rank runs this
        hook."""
        checkpoint["rng_states"] = rng_state.gather()
        checkpoint.update(self.training_record())
        # Frozen base weights stay out (LoRA), whichever strategy collected the state dict.
        if not self.strict_loading:
            state = checkpoint.get("state_dict") or {}
            checkpoint["state_dict"] = {
                k: v for k, v in state.items() if k in self.parameter_shapes
            }

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
        if self.parameter_counts is not None:
            settings["trainable_parameters"], settings["total_parameters"] = self.parameter_counts
        batch_size = getattr(trainer.datamodule, "hparams", {}).get("batch_size")
        if batch_size is not None:
            settings["batch_size_per_device"] = batch_size
            settings["effective_batch_size"] = (
                batch_size * trainer.accumulate_grad_batches * trainer.world_size
            )
        scores = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") and v.numel() == 1
        }
        return {
            "training_settings": settings,
            "evaluation": scores,
            "skipped_steps": self.skipped_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Check the weights' shapes (a single-file checkpoint under a plain strategy; the sharding
        strategies check before they load) and keep this rank's RNG state for the first step."""
        self.skipped_steps = int(checkpoint.get("skipped_steps") or 0)
        if "state_dict" in checkpoint and self.parameter_shapes:
            model_state = {
                k: v.shape for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
            }
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
            rng_state.restore(self._rng_to_restore)
            self._rng_to_restore = None


LR_SCHEDULER_TYPES = (
    torch.optim.lr_scheduler.LRScheduler,
    torch.optim.lr_scheduler.ReduceLROnPlateau,
)


def class_spec(value, name: str, base) -> Optional[dict]:
    """``value`` (None, a ``{class_path, init_args}`` dict or the CLI's namespace of one) as a
    plain dict, its class imported and checked to be a ``base`` now rather than at the first step."""
    if value is None:
        return None
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if not isinstance(value, dict) or not isinstance(value.get("class_path"), str):
        raise ValueError(
            f"XLlamaModule: {name} must be {{class_path: ..., init_args: {{...}}}}, got {value!r}"
        )
    init_args = value.get("init_args") or {}
    if hasattr(init_args, "as_dict"):
        init_args = init_args.as_dict()
    found = import_class(value["class_path"], name)
    if not (isinstance(found, type) and issubclass(found, base)):
        expected = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
        raise ValueError(f"XLlamaModule: {name} {value['class_path']!r} is not a {expected}")
    return {"class_path": value["class_path"], "init_args": dict(init_args)}


def import_class(path: str, name: str) -> type:
    """The class ``package.module.Class`` names."""
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"XLlamaModule: {name} {path!r} cannot be imported ({err})") from None


def build_from_spec(spec: dict, first):
    """``spec``'s class built on ``first`` (parameter groups, or the optimizer of a schedule)."""
    return import_class(spec["class_path"], "class_path")(first, **spec["init_args"])


def keep_group_settings(trainer, settings: list[dict]) -> None:
    """Put a restored optimizer's group settings (restored with its state) back to ``settings``,
    those this run built, keeping the schedule's progress: a resumed run trains with its own
    ``--optimizer`` arguments."""
    schedules = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs}
    for optimizer in trainer.optimizers:
        schedule = schedules.get(id(optimizer))
        for index, (group, fresh) in enumerate(zip(optimizer.param_groups, settings)):
            peak = fresh.get("initial_lr", fresh["lr"])
            base = group.get("initial_lr") or group["lr"]
            progress = group["lr"] / base if base else 1.0
            group.update({k: v for k, v in fresh.items() if k not in ("lr", "initial_lr")})
            group["lr"], group["initial_lr"] = peak * progress, peak
            if schedule is not None and hasattr(schedule, "base_lrs"):
                schedule.base_lrs[index] = peak
                if hasattr(schedule, "_last_lr"):
                    schedule._last_lr[index] = group["lr"]
