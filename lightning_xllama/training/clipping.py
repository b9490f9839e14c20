"""The gradients' global norm, and clipping by it, for plain and sharded (DTensor) gradients."""

from __future__ import annotations

import torch


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so their global L2 norm is at most ``max_norm``; return the norm before.

    Sharded (DTensor) gradients give a partial norm per rank: ``full_tensor`` reduces it to the
    global one. Foreach kernels, no host sync.
    """
    norm = grad_norm(parameters)
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm, foreach=True)
    return norm


def grad_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """The global L2 norm of the parameters' gradients (a device tensor, no host sync).

    Sharded (DTensor) gradients give a partial norm per rank: ``full_tensor`` reduces it to the
    global one. A NaN or infinite gradient makes the norm NaN or infinite.
    """
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return norm
