"""The learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from typing import Callable, Optional


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
