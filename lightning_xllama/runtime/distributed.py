"""The process group as the rest of the package needs it: whether there is one, this process's
rank, the number of ranks, gathering a value from every rank, the share of work of each rank,
and whether a strategy shards the model (so every rank must join each generation step).

Every function works without a process group, as one rank of one.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def is_initialized() -> bool:
    """Whether a process group is set up (torch may be built without distributed support)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def gather_object(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
    if world_size() == 1:
        return [obj]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def on_rank_zero(compute: Callable[[], T]) -> T:
    """``compute()`` run once, on rank 0, and its result sent to every rank."""
    if world_size() == 1:
        return compute()
    box = [compute() if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def share_size(count: int) -> int:
    """The most items of ``count`` that one rank gets from :func:`rank_share`."""
    return -(-count // world_size())


def rank_share(count: int) -> range:
    """The indices of ``count`` items that this rank works on: contiguous shares of
    :func:`share_size` items in rank order (the last ranks may get fewer, or none)."""
    share = share_size(count)
    start = rank() * share
    return range(min(start, count), min(start + share, count))


def shards_model(trainer) -> bool:
    """Whether ``trainer``'s strategy splits the model over several ranks (FSDP, FSDP2): then
    generation must keep the ranks in step (``synced_gpus``). DDP holds a whole model per rank;
    DeepSpeed, a DDPStrategy too, may shard it (ZeRO-3), so it counts as sharding."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

    strategy = trainer.strategy
    whole_model = isinstance(strategy, DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)
    return trainer.world_size > 1 and not whole_model
