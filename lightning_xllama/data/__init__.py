"""Data: readers for the user's files, the synthetic world, templating, mixing and batching."""

from lightning_xllama.data.datamodule import CoITDataModule

__all__ = ["CoITDataModule"]
