"""Causal-LM cross-entropy that never holds the fp32 logits of the whole batch.

The usual loss (``lm_head`` over every position, ``.float()``, ``cross_entropy``) keeps several
``tokens x vocab`` fp32 tensors alive at once (logits, log-softmax, their gradients): at a
32,000-token vocabulary they dwarf the rest of the step's activations. Here the logits are
built ``chunk_size`` rows at a time and each chunk's gradients are computed right away in the
forward pass, so the peak holds one chunk's logits plus the gradient of the head's weight.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100
"""Label of tokens that carry no loss, as ``data.encoding.IGNORE_INDEX``."""

_FROM_CONFIG = object()
"""Default of ``computing_loss``'s ``softcap``: the value read from the model's config."""


def _compute_dtype(hidden: Tensor) -> torch.dtype:
    """The dtype the matmuls run in: autocast's where it is on, else the inputs' own."""
    device_type = hidden.device.type
    if (
        hidden.is_floating_point()
        and torch.amp.is_autocast_available(device_type)
        and torch.is_autocast_enabled(device_type)
    ):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Loss and all gradients in one chunked pass; backward only scales them."""

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        weight: Tensor,
        labels: Tensor,
        chunk_size: int,
        softcap: Optional[float],
        bias: Optional[Tensor],
        grad_enabled: bool,
    ) -> Tensor:
        # The autocast dtype is applied here once, by hand, and the matmuls run with autocast off:
        # autocast would otherwise recast the whole weight for every chunk (its cast cache is off
        # without grad mode, which a Function's forward runs in).
        dtype = _compute_dtype(hidden)
        # ``needs_input_grad`` says True under ``no_grad`` too: evaluation would pay for gradients.
        need_hidden = grad_enabled and ctx.needs_input_grad[0]
        need_weight = grad_enabled and ctx.needs_input_grad[1]
        need_bias = grad_enabled and bias is not None and ctx.needs_input_grad[5]
        n = hidden.shape[0]
        labels = labels.reshape(n)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if need_hidden else None
            grad_weight = (
                torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                if need_weight
                else None
            )
            grad_bias = (
                torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
                if need_bias
                else None
            )
            need_grad = grad_hidden is not None or grad_weight is not None or grad_bias is not None
            for start in range(0, n, chunk_size):
                rows = slice(start, start + chunk_size)
                h = hidden[rows].to(dtype)
                z = F.linear(h, w, b).float()  # a no-op for fp32 logits: then ``z`` is them
                label = labels[rows]
                valid = label != IGNORE_INDEX
                target = torch.where(valid, label, 0).unsqueeze(1)
                if softcap is not None:
                    t = z.div_(softcap).tanh_()
                    z = t * softcap
                # logsumexp by hand, in place: ``exp(z - max)`` becomes the softmax, and then the
                # gradient, in the same buffer (``torch.logsumexp`` would take two more).
                z_target = z.gather(1, target).squeeze(1)
                z_max = z.amax(dim=1, keepdim=True)
                p = z.sub_(z_max).exp_()
                total = p.sum(dim=1, keepdim=True)
                lse = (z_max + total.log()).squeeze(1)
                loss += torch.where(valid, lse - z_target, 0.0).sum()
                if need_grad:
                    # d loss / d z = softmax(z) - onehot(target), zero for ignored rows.
                    keep = valid.unsqueeze(1).to(p.dtype)
                    p.mul_(keep / total)
                    p.scatter_add_(1, target, -keep)
                    if softcap is not None:
                        p.mul_(t.square_().neg_().add_(1))  # d z / d logits = 1 - tanh^2
                    if grad_bias is not None:
                        grad_bias += p.sum(0)
                    d = p.to(dtype)
                    if grad_hidden is not None:
                        if grad_hidden.dtype == dtype:
                            torch.mm(d, w, out=grad_hidden[rows])
                        else:
                            grad_hidden[rows] = d @ w
                    if grad_weight is not None:
                        if dtype == torch.float32:
                            grad_weight.addmm_(d.T, h)
                        else:
                            grad_weight += d.T @ h
                # Let go of this chunk's buffers before the next chunk's logits are allocated.
                z = t = p = d = None
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.used = False
        return loss

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        # The saved gradients are scaled in place (no second copy of the weight's gradient), so
        # they can serve one backward only.
        if ctx.used:
            raise RuntimeError(
                "chunked_cross_entropy's gradients were already used: no retain_graph"
            )
        ctx.used = True
        grads = [None if g is None else g.mul_(grad_output.to(g.dtype)) for g in ctx.saved_tensors]
        return grads[0], grads[1], None, None, None, grads[2], None


def chunked_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    chunk_size: int = 1024,
    softcap: Optional[float] = None,
    bias: Optional[Tensor] = None,
) -> Tensor:
    """Summed cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels`` (-100: ignored).

    Equal to ``F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")``
    (with Gemma-2's ``softcap * tanh(logits / softcap)`` when ``softcap`` is set), but the
    logits exist ``chunk_size`` rows at a time. The gradients are computed in this call and kept
    until backward: ``tokens x hidden`` for ``hidden`` and an fp32 ``vocab x hidden`` accumulator
    for ``weight``.

    Args:
        hidden: ``[N, H]`` final hidden states.
        weight: ``[V, H]`` output embedding.
        labels: ``[N]`` target ids, long.
        chunk_size: rows of logits built at once.
        softcap: final-logit soft-capping value, None for none.
        bias: ``[V]`` output bias, if the head has one.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _ChunkedCrossEntropy.apply(
        hidden, weight, labels, chunk_size, softcap, bias, torch.is_grad_enabled()
    )


class ChunkedLossHead(torch.nn.Linear):
    """An ``lm_head`` that can return the summed, shifted loss instead of the logits.

    Outside ``computing_loss`` it is an ``nn.Linear``, with the same ``weight`` and ``bias``
    (state dicts, tied embeddings and exports do not change). Inside, its forward computes the
    chunked loss of positions ``[:, :-1]`` against ``labels[:, 1:]``, keeps it for
    ``take_loss`` and returns empty ``(B, T, 0)`` logits, so the model's own post-processing of
    the logits (soft-capping, ``.float()``) costs nothing. The loss is computed inside the
    model's forward, not from logits afterwards, because that is when sharding wrappers (FSDP,
    FSDP2) have the head's full weight gathered.
    """

    default_softcap: Optional[float] = None
    _loss_request: Optional[tuple[Tensor, int, Optional[float], Optional[Tensor]]] = None
    _loss: Optional[Tensor] = None

    @contextlib.contextmanager
    def computing_loss(
        self,
        labels: Tensor,
        chunk_size: int = 1024,
        softcap: Optional[float] = _FROM_CONFIG,  # type: ignore[assignment]
        positions: Optional[Tensor] = None,
    ) -> Iterator[ChunkedLossHead]:
        """Forwards in this block compute the loss against ``labels`` ``[B, T]``, unshifted as HF's.

        ``softcap`` defaults to the value ``install_chunked_loss_head`` read from the config;
        pass None to turn capping off. ``positions``: flat indices into ``[B * T]`` of the only
        positions whose next token is trained on (``data.collate.loss_positions``); the others'
        logits are then never computed. None: every position.
        """
        if softcap is _FROM_CONFIG:
            softcap = self.default_softcap
        self._loss_request, self._loss = (labels, chunk_size, softcap, positions), None
        try:
            yield self
        finally:
            self._loss_request = None

    def take_loss(self) -> Tensor:
        """The 0-dim summed loss of the last forward in ``computing_loss``; it is handed over once."""
        if self._loss is None:
            raise RuntimeError("no loss: call the model inside head.computing_loss(labels)")
        loss, self._loss = self._loss, None
        return loss

    def forward(self, hidden: Tensor) -> Tensor:
        if self._loss_request is None:
            return super().forward(hidden)
        if self._loss is not None:
            raise RuntimeError("the previous forward's loss was not taken (head.take_loss())")
        labels, chunk_size, softcap, positions = self._loss_request
        if labels.shape != hidden.shape[:-1]:
            raise ValueError(
                f"labels {tuple(labels.shape)} do not match hidden states {tuple(hidden.shape)}"
            )
        # Shift the labels, not the hidden states: a view of ``hidden`` needs no copy.
        shifted = torch.cat(
            [labels[:, 1:], labels.new_full((labels.shape[0], 1), IGNORE_INDEX)], dim=1
        ).reshape(-1)
        flat = hidden.reshape(-1, hidden.shape[-1])
        if positions is not None:
            flat, shifted = flat.index_select(0, positions), shifted.index_select(0, positions)
        self._loss = chunked_cross_entropy(
            flat,
            self.weight,
            shifted,
            chunk_size=chunk_size,
            softcap=softcap,
            bias=self.bias,
        )
        return hidden.new_empty(*hidden.shape[:-1], 0)


_HEAD_CLASSES: dict[type, type] = {torch.nn.Linear: ChunkedLossHead}


def _head_class(cls: type) -> type:
    """``ChunkedLossHead``, or a subclass of it and ``cls`` for a wrapped ``nn.Linear`` (FSDP2's)."""
    if cls not in _HEAD_CLASSES:
        _HEAD_CLASSES[cls] = type(f"ChunkedLoss{cls.__name__}", (ChunkedLossHead, cls), {})
    return _HEAD_CLASSES[cls]


def final_logit_softcap(config) -> Optional[float]:
    """A HF config's ``final_logit_softcapping`` (Gemma-2), None where the model has none."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    value = getattr(config, "final_logit_softcapping", None)
    return None if value is None else float(value)


def install_chunked_loss_head(model: torch.nn.Module) -> ChunkedLossHead:
    """Turn the model's output embedding into a ``ChunkedLossHead`` in place and return it.

    Only the instance's class changes: the parameters, hooks and weight tying stay as they are,
    and a meta-device model works the same. Its default soft-cap is read from ``model.config``.
    """
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"the output embedding is a {type(head).__name__}, not an nn.Linear")
    if not isinstance(head, ChunkedLossHead):
        head.__class__ = _head_class(type(head))
    head.default_softcap = final_logit_softcap(getattr(model, "config", None))
    return head
