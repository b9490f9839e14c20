"""Where the demo's files go.

``prepare-demo`` writes an output folder (:class:`DemoLayout`) holding ``data/`` in the layout of
:class:`~lightning_xllama.data.layout.DataLayout` (defined with the data code, since ``scaling
sweep`` reads any data folder in that layout, real corpora too) and ``base_model/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from lightning_xllama.data.layout import DataLayout

__all__ = ["DataLayout", "DemoLayout"]


@dataclass(frozen=True)
class DemoLayout:
    """The folder ``prepare-demo`` writes: ``data/``, ``base_model/`` and its ``prepare.json`` stamp."""

    root: Path

    def __init__(self, root: Union[str, Path] = "artifacts/demo"):
        object.__setattr__(self, "root", Path(root))

    @property
    def data(self) -> DataLayout:
        return DataLayout(self.root / "data")

    @property
    def base_model(self) -> Path:
        return self.root / "base_model"

    @property
    def stamp(self) -> Path:
        return self.root / "prepare.json"
