"""Data: readers for the user's files, templating, mixing, batching and allocation files.

The DataModules and :class:`Stream` are imported on first use, so that importing the package (or a
light module of it, such as :mod:`lightning_xllama.data.allocation`) does not load Lightning and
with it scipy and matplotlib.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CoITDataModule": "lightning_xllama.data.datamodule",
    "MuITDataModule": "lightning_xllama.data.datamodule",
    "Stream": "lightning_xllama.data.streams",
}

__all__ = ["CoITDataModule", "MuITDataModule", "Stream"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
