"""The training loader: mixed streams read, tokenised and batched lazily in worker processes,
resumable at the batch the training step actually consumed.

Each rank's epoch is split between ``num_workers`` logical workers; with ``world_size`` ranks
that makes ``world_size * num_workers`` shards. ``mixing.deal`` gives every shard the same
number of examples, each stream in proportion, as contiguous ranges of the stream's order (so a
worker reads only its own windows of a large file). A shard's examples are interleaved in a
seeded order (``mixing.shard_order``), tokenised a buffer at a time (one batch, or
``group_batches`` batches where the batching regroups examples: :func:`cut_buffer`), and
collated in the worker. A buffer always gives ``ceil(examples / batch_size)`` batches, so every
worker of every rank holds the same number of batches, planned without tokenising anything.

The DataLoader takes one batch from each worker in turn. All workers hold the same number of
batches, so the position ``(epoch, batches consumed)`` determines everything: each worker skips
its share of the consumed batches (reading one window per stream, not the data before it, and
re-cutting only the buffer it stops in), and
the workers are renumbered so the first one asked continues the turn where it stopped. Nothing
depends on global random state, so the position is the whole data state of a rank.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from dataclasses import dataclass, fields, replace
from itertools import islice
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Sequence, Union

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.data.mixing import deal, shard_order
from lightning_xllama.data.packing import pack_buffer
from lightning_xllama.data.sources import Example
from lightning_xllama.data.streams import StreamReader

BatchingMode = Literal["pad", "group_by_length", "pack"]
"""``pad``: batches in stream order, padded to their longest example; ``group_by_length``:
batches of similar lengths from a buffer of ``group_batches`` batches; ``pack``: examples packed
into rows whose examples never attend to each other (``data/packing.py``): one row per batch, or
with a ``pack_length`` the examples of ``group_batches`` batches packed together into rows of at
most that many tokens, dealt back into as many batches of about equal token counts."""
BATCHING_MODES = ("pad", "group_by_length", "pack")


@dataclass
class Batching:
    """How training examples become micro-batches (the data module's ``batching`` group).

    In a config: ``batching: {mode: pack, pack_length: 1024}``; on the command line:
    ``--data.init_args.batching.mode pack --data.init_args.batching.pack_length 1024``. The mode
    alone (``batching: pack``) keeps the other fields' defaults.

    Args:
        mode: ``pad`` (dynamic padding), ``group_by_length`` (batches of similar lengths) or
            ``pack`` (several examples a row, attending only within their own example: per-example
            ``position_ids`` and the segments' ``cu_seq_lens``, no padding inside a row).
        pack_length: with ``pack``, the longest row in tokens, at least ``max_length``. None
            (default): each micro-batch's ``batch_size`` examples in one row. Set: the examples
            of ``group_batches`` micro-batches are packed together into balanced rows of at most
            this many tokens, and the rows, sorted by length, are cut into ``group_batches``
            micro-batches of about the same number of tokens (those of longer rows take fewer
            rows): a micro-batch holds a varying number of examples (the loss is normalised by
            response tokens per optimizer step), the steps per epoch and the epoch's examples
            are unchanged, and far less of each tensor is padding than when each micro-batch is
            packed alone (``benchmarks/data_pipeline.py``: 99.8% real tokens at ``batch_size``
            8, ``group_batches`` 64, ``pack_length`` 512). Memory: a micro-batch tensor of
            about ``batch_size`` examples' tokens; sdpa and eager attention also build a
            rows x width^2 mask on the device, flash and varlen attention none.
        group_batches: micro-batches regrouped in one buffer: sorted by length with
            ``group_by_length``, packed together with ``pack`` and a ``pack_length``. Larger
            buffers group better and hold more encoded examples in each worker. Part of the data
            plan: resume with the same value to continue exactly.
        pad_to_multiple_of: round every batch's width up to a multiple of this, so compiled
            layers and attention kernels see few distinct shapes (64 suits GPUs; 1: no rounding).
    """

    mode: BatchingMode = "pad"
    pack_length: Optional[int] = None
    group_batches: int = 64
    pad_to_multiple_of: int = 1


FLAT_BATCHING_KEYS = ("pack_length", "group_batches", "pad_to_multiple_of")
"""The data module's earlier top-level arguments, now fields of :class:`Batching`."""


def resolve_batching(
    batching: Union[str, Batching, Mapping], owner: str = "the data module", **flat: Any
) -> Batching:
    """The :class:`Batching` group from the data module's arguments.

    ``batching`` is a mode (``pad``, ``group_by_length``, ``pack``), a :class:`Batching` or a
    mapping of its fields (as saved in a checkpoint's hyperparameters). ``flat`` holds the
    top-level ``pack_length``, ``group_batches`` and ``pad_to_multiple_of`` (None: not given):
    with a mode they fill in the group; with a group they must agree with it.
    """
    given = {k: v for k, v in flat.items() if v is not None}
    if isinstance(batching, Mapping):
        unknown = set(batching) - {f.name for f in fields(Batching)}
        if unknown:
            raise ValueError(
                f"{owner}: unknown batching field(s) {sorted(unknown)}; expected "
                f"{[f.name for f in fields(Batching)]}"
            )
        batching = Batching(**batching)
    if isinstance(batching, Batching):
        clashes = {k: v for k, v in given.items() if getattr(batching, k) != v}
        if clashes:
            shown = ", ".join(
                f"{k}: {v} (batching.{k}: {getattr(batching, k)})" for k, v in clashes.items()
            )
            raise ValueError(
                f"{owner}: {shown} disagree with the batching group; give each setting once, "
                "inside batching: {mode, pack_length, group_batches, pad_to_multiple_of}"
            )
        return replace(batching)
    return Batching(batching, **given)


def cut_buffer(
    encoded: list[dict],
    batch_size: int,
    batching: BatchingMode,
    pack_length: Optional[int],
    rng: np.random.Generator,
) -> list[list[dict]]:
    """One buffer's encoded examples (dropped ones included, marked) cut into its micro-batches:
    ``ceil(len(encoded) / batch_size)`` of them whatever the batching, so the number of batches
    of a worker is planned from its number of examples alone.

    ``pad`` and ``pack`` without ``pack_length``: consecutive runs of ``batch_size``.
    ``group_by_length``: the buffer sorted by length, cut into runs, the runs in ``rng``'s order.
    ``pack`` with ``pack_length``: the whole buffer packed into rows of at most ``pack_length``
    tokens dealt into the micro-batches (:func:`~lightning_xllama.data.packing.pack_buffer`),
    each example marked with its ``row`` in its micro-batch and the micro-batch listing them row
    by row (a micro-batch holds about the same number of tokens as the others, and a varying
    number of examples); the dropped examples dealt in turn; the micro-batches in ``rng``'s order.
    """
    count = -(-len(encoded) // batch_size)
    if batching == "pack" and pack_length is not None:
        kept = [e for e in encoded if "dropped" not in e]
        batches = []
        for rows in pack_buffer([len(e["input_ids"]) for e in kept], count, pack_length):
            batch = []
            for r, row in enumerate(rows):
                for i in row:
                    kept[i]["row"] = r
                    batch.append(kept[i])
            batches.append(batch)
        for j, e in enumerate(e for e in encoded if "dropped" in e):
            batches[j % count].append(e)
    else:
        if batching == "group_by_length":
            encoded = sorted(encoded, key=lambda e: len(e.get("input_ids", ())))
        batches = [encoded[i : i + batch_size] for i in range(0, len(encoded), batch_size)]
        if batching != "group_by_length":
            return batches
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class DataPosition:
    """Where a rank stands in the training data: the epoch, and the batches consumed in it.

    Ranks consume batches in lockstep, so the position is the same on every rank, and each
    rank's shard follows from it and its rank.
    """

    epoch: int = 0
    batches: int = 0


class MixtureDataset(IterableDataset):
    """One rank's batches of an epoch (see the module docstring).

    Args:
        readers: the streams' readers.
        counts: examples of each stream in the epoch (``mixing.epoch_counts``).
        rank, world_size: this rank among all.
        workers: logical workers per rank (the DataLoader's ``num_workers``, at least 1).
        batch_size: examples per batch.
        batching: see :data:`BatchingMode`.
        group_batches: batches in a length-grouping buffer.
        encode: examples -> encoded dicts (``encoding.encode_examples`` with its settings).
        collate: encoded examples -> batch tensors.
        pad_token_id: token of the one-token stand-in for a batch whose examples were all dropped.
        seed: seeds the interleaving and the batch order of length groups and packed buffers.
        pack_length: with ``pack``, the longest row: the examples of ``group_batches`` batches
            are then packed together (:func:`cut_buffer`); None: one row per batch.
    """

    def __init__(
        self,
        readers: Sequence[StreamReader],
        counts: Sequence[int],
        rank: int,
        world_size: int,
        workers: int,
        batch_size: int,
        batching: BatchingMode,
        group_batches: int,
        encode: Callable[[list[Example]], list[dict]],
        collate: Callable[[list[dict]], dict],
        pad_token_id: int,
        seed: int,
        pack_length: Optional[int] = None,
    ):
        self.readers, self.rank, self.workers = list(readers), rank, workers
        self.batch_size, self.batching, self.group_batches = batch_size, batching, group_batches
        self.encode, self.collate, self.pad_token_id, self.seed = (
            encode,
            collate,
            pad_token_id,
            seed,
        )
        self.pack_length = pack_length
        self.dealt = deal(counts, world_size * workers)
        self.starts = np.cumsum(self.dealt, axis=1) - self.dealt
        self.shard_examples = int(self.dealt[:, 0].sum())
        self.padding_examples = int(self.dealt.sum() - sum(counts))
        """Examples repeated so that every shard holds as many (at most ``shards - 1``)."""
        self.position = DataPosition()

    @property
    def worker_batches(self) -> int:
        return math.ceil(self.shard_examples / self.batch_size)

    def __len__(self) -> int:
        return self.workers * self.worker_batches

    # --- one logical worker ---------------------------------------------------------------
    def _slots(self, shard: int, epoch: int, first: int) -> Iterator[tuple[int, Example]]:
        """(stream, example) for the shard's slots from ``first`` on."""
        counts = self.dealt[:, shard]
        labels = shard_order(counts, self.seed, epoch, shard)
        done = np.bincount(labels[:first], minlength=len(counts))
        items = [
            reader.items(epoch, int(start + done[s]), int(start + counts[s]))
            for s, (reader, start) in enumerate(zip(self.readers, self.starts[:, shard]))
        ]
        for label in labels[first:]:
            yield int(label), self.readers[label].example(next(items[label]))

    @property
    def buffer_batches(self) -> int:
        """Micro-batches cut from one buffer of examples: ``group_batches`` when the batching
        regroups examples (``group_by_length``, ``pack`` with a ``pack_length``), otherwise 1."""
        regroups = self.batching == "group_by_length" or (
            self.batching == "pack" and self.pack_length is not None
        )
        return self.group_batches if regroups else 1

    def _encoded_batches(self, logical: int, epoch: int, first_batch: int) -> Iterator[list[dict]]:
        """Encoded examples (dropped ones included, marked) of a logical worker's batches."""
        shard = self.rank * self.workers + logical
        group = self.buffer_batches
        number, skip = divmod(first_batch, group)
        slots = self._slots(shard, epoch, number * group * self.batch_size)
        while chunk := list(islice(slots, group * self.batch_size)):
            encoded = self.encode([example for _, example in chunk])
            for item, (stream, _) in zip(encoded, chunk):
                item["stream"] = stream
            order = np.random.default_rng([self.seed, epoch, shard, number, 3])
            batches = cut_buffer(encoded, self.batch_size, self.batching, self.pack_length, order)
            yield from batches[skip:]
            number, skip = number + 1, 0

    def encoded_batches(
        self, epoch: int, start: int, logicals: Optional[list[int]] = None
    ) -> Iterator[list[dict]]:
        """Batches from position ``start`` in the order the DataLoader yields them: one from
        each logical worker in turn, the turn resuming at worker ``start mod workers``."""
        logicals = list(range(self.workers)) if logicals is None else logicals
        rotation = start % self.workers
        turn = [(w + rotation) % self.workers for w in logicals]
        streams = [
            self._encoded_batches(w, epoch, max(0, -(-(start - w) // self.workers))) for w in turn
        ]
        while streams:
            for stream in list(streams):
                batch = next(stream, None)
                if batch is None:
                    streams.remove(stream)
                else:
                    yield batch

    def collated(self, batch: list[dict]) -> dict:
        """Batch tensors plus a ``report`` of what was truncated or dropped in the batch."""
        kept = [e for e in batch if "dropped" not in e]
        report = {
            "examples": len(kept),
            "truncated": sum(e["truncated"] for e in kept),
            "masked": sum(e.get("masked", False) for e in kept),
            "dropped": [e["dropped"] for e in batch if "dropped" in e],
            "empty": not kept,
        }
        if not kept:  # every example dropped: one masked token keeps the ranks' step counts equal
            kept = [{"input_ids": [self.pad_token_id], "labels": [IGNORE_INDEX]}]
        return {**self.collate(kept), "report": report}

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        logicals = None
        if info is not None:
            if info.num_workers != self.workers:
                raise ValueError(
                    f"the data was planned for {self.workers} workers, the loader has {info.num_workers}"
                )
            logicals = [info.id]
        for batch in self.encoded_batches(self.position.epoch, self.position.batches, logicals):
            yield self.collated(batch)


class ResumableLoader:
    """Iterates a rank's batches from its :class:`DataPosition`, in ``num_workers`` processes.

    Not a DataLoader on purpose: Lightning would otherwise save and restore the loader's own
    state, which is a prefetched batch ahead of the training step. The position is kept by the
    DataModule instead, counted as the training step takes each batch. Workers are started
    per epoch, so each starts from the current position.
    """

    def __init__(
        self,
        dataset: MixtureDataset,
        position: DataPosition,
        num_workers: int,
        current_epoch: Callable[[], Optional[int]],
    ):
        # not called ``dataset``: Lightning would warn that an IterableDataset's length may be
        # inexact with workers; here every worker's share is planned, so it is exact
        self.mixture, self.position, self.num_workers = dataset, position, num_workers
        self.current_epoch = current_epoch
        self._resumed_note = False
        # Lightning warns on a mid-epoch resume unless the loader has state_dict/load_state_dict;
        # this loader's position is restored by the DataModule instead (one note in __iter__)
        warnings.filterwarnings("ignore", message=NOT_RESUMABLE_WARNING)

    def __len__(self) -> int:
        return len(self.mixture)

    def __iter__(self) -> Iterator[dict]:
        epoch = self.current_epoch()
        if epoch is None:  # no trainer: continue the position's epoch, or start the next
            epoch = self.position.epoch + (self.position.batches >= len(self))
        if epoch != self.position.epoch:
            self.position.epoch, self.position.batches = epoch, 0
        self.mixture.position = DataPosition(self.position.epoch, self.position.batches)
        if self.position.batches and not self._resumed_note:
            self._resumed_note = True
            rank_zero_info(
                f"training data resumes at epoch {self.position.epoch}, batch "
                f"{self.position.batches}: the position saved in the checkpoint"
            )
        if self.num_workers:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers are forked
        yield from DataLoader(
            self.mixture,
            batch_size=None,
            num_workers=self.num_workers,
            worker_init_fn=ignore_sigterm if self.num_workers else None,
        )


NOT_RESUMABLE_WARNING = r"You're resuming from a checkpoint that ended before the epoch ended"
"""Start of Lightning's warning for a mid-epoch resume with a loader it cannot restore."""


def ignore_sigterm(worker_id: int) -> None:
    """A loader worker outlives a SIGTERM sent to the whole process group (a scheduler's
    pre-emption), and a Ctrl-C (SIGINT, sent to the whole foreground group): the main process
    finishes its step, saves and then shuts the workers down. A worker killed by the signal
    would crash the run before it could save. Workers still exit when the main process dies
    (the DataLoader's watchdog)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
