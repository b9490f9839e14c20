"""Divergence: a run whose loss or gradients stop being finite, and weights that are not.

:class:`~lightning_xllama.model.XLlamaModule` raises :class:`TrainingDiverged` at the optimizer
step whose loss or gradient norm is NaN or infinite (``on_nonfinite: stop``, or after
``max_consecutive_skips`` skipped steps in a row); the CLI prints its one line and exits 1, and
``run.json`` says ``diverged``. The exports (``HFExport``, the ``export`` command) refuse weights
that :func:`nonfinite_weights` finds, so a diverged run never replaces a good model folder.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch

WHAT_TO_TRY = (
    "try a lower learning_rate, a longer warm-up (warmup_ratio), gradient clipping "
    "(trainer.gradient_clip_val, e.g. 1.0), or bf16 instead of fp16"
)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm of an optimizer step is not finite; the message is one line
    naming the step, the learning rate and what to try."""


def nonfinite_weights(tensors: Iterable[tuple[str, torch.Tensor]]) -> Optional[str]:
    """None when every tensor is finite, else a summary: how many tensors and values are NaN or
    infinite, of how many, and the first names. Reads each tensor once (a 7B model: seconds)."""
    bad: list[str] = []
    bad_values = total_tensors = total_values = 0
    for name, tensor in tensors:
        total_tensors += 1
        total_values += tensor.numel()
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
            continue
        bad.append(name)
        bad_values += int((~torch.isfinite(tensor)).sum())
    if not bad:
        return None
    return (
        f"{len(bad)} of {total_tensors} tensors hold NaN or infinite values "
        f"({bad_values:,} of {total_values:,} parameters), e.g. {', '.join(bad[:3])}"
    )
