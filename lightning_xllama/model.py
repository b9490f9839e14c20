"""``lightning_xllama.model.XLlamaModule``: the name configs and scripts use for the
LightningModule, which lives in :mod:`lightning_xllama.training.module`."""

from lightning_xllama.training.module import XLlamaModule

__all__ = ["XLlamaModule"]
