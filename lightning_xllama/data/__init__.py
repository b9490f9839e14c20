"""Data: readers for the user's files, the synthetic world, templating, mixing and batching."""

from lightning_xllama.data.datamodule import CoITDataModule, MuITDataModule
from lightning_xllama.data.streams import Stream

__all__ = ["CoITDataModule", "MuITDataModule", "Stream"]
