"""Random generator states (Python, NumPy, torch, CUDA) captured for a checkpoint and restored on
resume, so a resumed run draws the same random numbers as an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import torch

from lightning_xllama.runtime import distributed


def capture() -> dict:
    """This process's random generators, as plain values and tensors (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict) -> None:
    """Set this process's random generators to a state from :func:`capture`."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather() -> list[dict]:
    """The RNG state of every rank, in rank order (a collective: every rank must call it)."""
    return distributed.gather_object(capture())
