"""A checkpoint's tensor shapes against the model's: a checkpoint written for another base model
fails before loading, naming the tensors that differ."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

METADATA_FILE = "meta.pt"
"""The non-tensor part of a sharded Lightning checkpoint folder (Lightning's own file name)."""

Shapes = Mapping[str, Sequence[int]]


def parameter_shapes(module) -> dict[str, tuple[int, ...]]:
    """The model's tensor shapes as a checkpoint's ``state_dict`` names them (``model.…``),
    recorded by ``XLlamaModule.configure_model`` before sharding flattens them: the tensors a
    checkpoint holds (with LoRA, the adapters only)."""
    shapes = getattr(module, "parameter_shapes", None)
    if not shapes:
        raise ValueError(
            f"{type(module).__name__} has no recorded parameter shapes: configure_model first"
        )
    return shapes


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a Lightning checkpoint's ``state_dict``: a file, or a sharded folder
    (read from its metadata, without loading a tensor)."""
    path = Path(path)
    if path.is_dir():
        from torch.distributed.checkpoint import FileSystemReader

        metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
        prefix = "state_dict."
        return {
            k[len(prefix) :]: tuple(v.size)
            for k, v in metadata.items()
            if k.startswith(prefix) and hasattr(v, "size")
        }
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)["state_dict"]
    return {k: tuple(v.shape) for k, v in state.items()}


def check_checkpoint_shapes(path: str | Path, expected: Shapes) -> None:
    """Fail, naming the tensors, when a checkpoint was written by a model of another shape."""
    compare_shapes(checkpoint_shapes(path), expected, f"checkpoint {path}")


def compare_shapes(found: Shapes, expected: Shapes, source: str) -> None:
    """Raise a ValueError that lists every tensor of ``source`` whose shape or presence differs."""
    found = {k: tuple(v) for k, v in found.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    differ = [
        f"{k}: checkpoint {found[k]}, model {expected[k]}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if differ or missing or unexpected:
        lines = differ + [f"{k}: missing from the checkpoint" for k in missing]
        lines += [f"{k}: in the checkpoint, not in the model" for k in unexpected]
        shown = "\n  ".join(lines[:20]) + (
            f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
        )
        raise ValueError(
            f"{source} does not fit the model: {len(differ)} tensor(s) differ in shape, {len(missing)} "
            f"missing, {len(unexpected)} unexpected. Was it written for another base model?\n  {shown}"
        )


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint's contents: a single file memory-mapped (tensors read when used), a
    sharded folder's metadata file (its tensors stay in the folder)."""
    path = Path(path)
    if path.is_dir():
        if not (path / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is a folder without {METADATA_FILE}: not a sharded Lightning checkpoint"
            )
        return torch.load(path / METADATA_FILE, map_location="cpu", weights_only=True)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
