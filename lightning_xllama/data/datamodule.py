"""The DataModules: MuIT mixes any number of streams (m-LLaMA); CoIT is its one-language case.

A stream is (kind, language, source, direction): Alpaca instructions in one language, or
parallel pairs with English turned into translation instructions. Streams are indexed once
(``prepare_data``), mixed by weight, count or allocation file under a stop rule
(``data/mixing.py``), read lazily in the shuffled order of ``data/streams.py``, templated,
tokenised with the prompt masked out, and batched (padded, length-grouped or packed) in worker
processes (``data/loader.py``). A few examples of each stream are held out for the validation
loss. The data position is saved in checkpoints and restored exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Callable, Optional

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lightning_xllama.data.allocation import read_allocation
from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.encoding import (
    IGNORE_INDEX,
    EncodingReport,
    Overflow,
    encode_examples,
)
from lightning_xllama.data.loader import (
    Batching,
    DataPosition,
    MixtureDataset,
    ResumableLoader,
    ignore_sigterm,
)
from lightning_xllama.data.mixing import (
    REPEAT_WARNING,
    STOP_RULES,
    UNSEEN_WARNING,
    StopRule,
    epoch_counts,
)
from lightning_xllama.data.packing import PackCollator
from lightning_xllama.data.sources import read_instructions, read_lines
from lightning_xllama.data.streams import Stream, StreamReader, held_out_units
from lightning_xllama.data.tasks import Direction, translation_prompt_instruction
from lightning_xllama.languages import import_language_modules
from lightning_xllama.prompts import Template, render_prompt
from lightning_xllama.runtime.hf_loading import load_tokenizer

log = logging.getLogger(__name__)

PLACES_SHOWN = 5
"""How many places (lines, records) a warning names before it says '...'."""

LENGTH_CHECK_EXAMPLES = 4096
"""Training examples of each stream that ``fit`` encodes before step 1 to count what
``max_length`` loses (:meth:`MuITDataModule.check_lengths`): all of a smaller stream, else the
first of epoch 0's order, which spans chunks drawn from the whole file."""
NO_RESPONSE = "no response token left"
"""Why the length check counts an encoded example with no trained token as lost."""

DATA_PLAN_KEY = "data_plan"
"""Where the DataModule's ``state_dict`` (so each checkpoint) holds :meth:`MuITDataModule.data_plan`."""


class MuITDataModule(L.LightningDataModule):
    """Multilingual instruction tuning: any number of streams mixed into one training set.

    Args:
        streams: the streams to mix (see :class:`~lightning_xllama.data.streams.Stream`).
        allocation: an allocation file (``scaling allocate`` writes one): its entries set the
            ``count`` or ``weight`` of the stream with the same kind, language and direction.
        stop: when an epoch ends for weighted streams: ``first_exhausted``, ``all_exhausted``
            (oversamples), ``all_exhausted_without_replacement`` (every example once) or
            ``total`` (oversamples a stream asked for more than it holds). Streams with counts
            ignore it. Unset: every example once an epoch (the paper's epochs) when no stream
            has a weight and ``examples_per_epoch`` is unset, else ``total``. A stream repeated
            more than twice an epoch, or more than half unseen, is warned about.
        examples_per_epoch: the epoch size of the ``total`` rule; by default every stream's
            training examples summed.
        val_examples_per_stream: records held out of each stream for the validation loss (at
            most a tenth of the stream).
        max_length: longest example in tokens (the paper: 512). ``fit`` encodes each stream's
            first training examples before step 1: it stops when none keeps a response token
            within the limit, and warns about a stream that loses more than half of them.
        overflow: what to do with a longer example: ``truncate`` its response or ``drop`` it
            (both counted and reported).
        template: ``alpaca`` (the package's Alpaca prompt), ``alpaca_official`` (the paper's: ends
            at ``### Response:``, the response tokenised with the prompt as the paper's
            ``train.py`` does) or ``chat`` (the tokenizer's chat template). Saved in
            ``run.json``; the evaluations prompt in it.
        batching: ``pad`` (dynamic padding), ``group_by_length`` (batches of similar lengths) or
            ``pack`` (several examples a row, attending only within their own example: per-example
            ``position_ids`` and the segments' ``cu_seq_lens``, no padding inside a row).
        pack_length: with ``pack``, the longest row in tokens, at least ``max_length``
            (``--data.init_args.pack_length 1024`` on the command line, ``pack_length: 1024``
            in a config's data ``init_args``). None (default): each micro-batch's
            ``batch_size`` examples in one row. Set: the examples of ``group_batches``
            micro-batches are packed together into balanced rows of at most this many tokens,
            and the rows, sorted by length, are cut into ``group_batches`` micro-batches of
            about the same number of tokens (those of longer rows take fewer rows): a
            micro-batch holds a varying number of examples (the loss is normalised by response
            tokens per optimizer step), the steps per epoch and the epoch's examples are
            unchanged, and far less of each tensor is padding than when each micro-batch is
            packed alone (``benchmarks/data_pipeline.py``: 99.8% real tokens at ``batch_size``
            8, ``group_batches`` 64, ``pack_length`` 512). Memory: a micro-batch tensor of
            about ``batch_size`` examples' tokens; sdpa and eager attention also build a
            rows x width^2 mask on the device, flash and varlen attention none.
        group_batches: micro-batches regrouped in one buffer (``--data.init_args.group_batches``,
            ``group_batches:``): sorted by length with ``group_by_length``, packed together with
            ``pack`` and a ``pack_length``. Larger buffers group better and hold more encoded
            examples in each worker. Part of the data plan: resume with the same value to
            continue exactly.
        batch_size: examples per micro-batch on each device (with ``pack`` and a
            ``pack_length``: on average; a buffer holds ``group_batches * batch_size`` examples).
        pad_to_multiple_of: round every batch's width up to a multiple of this, so compiled
            layers and attention kernels see few distinct shapes (64 suits GPUs; 1: no rounding).
        eval_batch_size: micro-batch size for validation and prediction (default batch_size).
        num_workers: worker processes that read, tokenise and batch; part of the data plan:
            resume with the same number (and devices) to continue exactly.
        seed: seeds the held-out split, the paraphrases and every shuffle.
        dedupe: skip repeated records within a stream (counted and reported).
        shuffle_window: records shuffled together in a stream; memory per stream and worker.
        cache_dir: where source indexes and Hugging Face data sets are cached (default
            ``~/.cache/lightning_xllama``).
        language_modules: modules imported first, for languages they register
            (:func:`lightning_xllama.languages.register`).
        tokenizer: tokenizer folder or hub name; the CLI links it to the model's path.
        predict_file: input of ``predict``: a JSONL of Alpaca records (instruction, input) or,
            with ``predict_direction``, a plain text file with one sentence to translate a line
            (empty lines are skipped and counted; each output's ``id`` is its line's index from 0).
        predict_direction: ``src-tgt`` language codes (``en-zh``) when ``predict_file`` is text.
    """

    def __init__(
        self,
        streams: list[Stream],
        allocation: Optional[str] = None,
        stop: Optional[StopRule] = None,
        examples_per_epoch: Optional[int] = None,
        val_examples_per_stream: int = 64,
        max_length: int = 512,
        overflow: Overflow = "truncate",
        template: Template = "alpaca",
        batching: Batching = "pad",
        pack_length: Optional[int] = None,
        group_batches: int = 64,
        pad_to_multiple_of: int = 1,
        batch_size: int = 4,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        seed: int = 42,
        dedupe: bool = False,
        shuffle_window: int = 8192,
        cache_dir: Optional[str] = None,
        language_modules: Optional[list[str]] = None,
        tokenizer: Optional[str] = None,
        predict_file: Optional[str] = None,
        predict_direction: Optional[str] = None,
    ):
        super().__init__()
        self._check_ranges(
            examples_per_epoch=examples_per_epoch,
            val_examples_per_stream=val_examples_per_stream,
            max_length=max_length,
            pack_length=pack_length,
            group_batches=group_batches,
            pad_to_multiple_of=pad_to_multiple_of,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            shuffle_window=shuffle_window,
        )
        import_language_modules(language_modules or [])
        self.streams = [s if isinstance(s, Stream) else Stream(**s) for s in streams]
        if not self.streams:
            raise ValueError("no streams to mix")
        labels = [s.label for s in self.streams]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"streams must differ in kind, language and direction (or name): {labels}"
            )
        if allocation is not None:
            self.streams = apply_allocation(self.streams, allocation)
        self._check_settings(stop, examples_per_epoch, batching, pack_length, max_length)
        self.save_hyperparameters(ignore=["streams"])
        if "streams" in inspect.signature(type(self).__init__).parameters:  # saved as plain values
            self.hparams["streams"] = [dataclasses.asdict(s) for s in self.streams]
        self.readers: list[StreamReader] = []
        self.counts: list[int] = []
        self.val_set: list[dict] = []
        self.predict_set: list[dict] = []
        self.val_report = EncodingReport()
        self.val_reports: dict[str, EncodingReport] = {}  # per stream label
        self.train_report = EncodingReport()
        self.length_checks: Optional[list[Optional[dict]]] = None  # by check_lengths
        self.position = DataPosition()
        self._tokenizer = None

    def _check_ranges(self, **values) -> None:
        """Each number in its range, refused here with one line rather than by numpy, a division
        or the first validation pass later on."""
        at_least = {  # setting: (lowest value, None allowed)
            "examples_per_epoch": (1, True),
            "val_examples_per_stream": (0, False),
            "max_length": (2, False),
            "pack_length": (2, True),
            "group_batches": (1, False),
            "pad_to_multiple_of": (1, False),
            "batch_size": (1, False),
            "eval_batch_size": (1, True),
            "num_workers": (0, False),
            "shuffle_window": (1, False),
        }
        for name, value in values.items():
            low, optional = at_least[name]
            whole = isinstance(value, int) and not isinstance(value, bool)
            if optional and value is None or whole and value >= low:
                continue
            expected = f"a whole number >= {low}" + (" or None" if optional else "")
            raise ValueError(f"{type(self).__name__}: {name} must be {expected}, got {value!r}")

    def _check_settings(self, stop, examples_per_epoch, batching, pack_length, max_length) -> None:
        if stop is not None and stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
        counted = [s.label for s in self.streams if s.count is not None]
        weighted = [s.label for s in self.streams if s.weight is not None]
        if counted and weighted:
            raise ValueError(
                f"streams {counted} have counts and {weighted} weights: give every stream a count "
                "(a stream without one takes all its records once), or use weights only"
            )
        if counted and examples_per_epoch is not None:
            raise ValueError(
                "examples_per_epoch splits weights; with counts the epoch is their sum"
            )
        if batching not in ("pad", "group_by_length", "pack"):
            raise ValueError(
                f"batching must be 'pad', 'group_by_length' or 'pack', got {batching!r}"
            )
        if pack_length is not None and pack_length < max_length:
            raise ValueError(
                f"pack_length ({pack_length}) must hold the longest example (max_length {max_length})"
            )

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.hparams.tokenizer is None:
                raise ValueError(
                    f"{type(self).__name__} needs a tokenizer (the CLI links it to the model)"
                )
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    # --- reading --------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Index every source once per node (downloading Hugging Face data sets)."""
        h = self.hparams
        for stream in self.streams:
            stream.index(stream.open(h.cache_dir), h.dedupe, h.cache_dir)

    def setup(self, stage: str) -> None:
        """Read the streams (index, held-out validation set, epoch plan). Under a Trainer's
        ``fit``, also :meth:`check_lengths` before step 1."""
        if stage == "predict":
            self.predict_set = self._read_predict_file()
            return
        if not self.readers:
            self._read_streams()
        if stage == "fit" and self.trainer is not None and self.length_checks is None:
            self.check_lengths()

    def _read_streams(self) -> None:
        h = self.hparams
        self.val_set, self.val_report, self.val_reports = [], EncodingReport(), {}
        for stream in self.streams:
            source = stream.open(h.cache_dir)
            index = stream.index(source, h.dedupe, h.cache_dir)
            held_out = held_out_units(
                index,
                min(h.val_examples_per_stream, index.usable_units // 10),
                h.seed,
                stream.label,
            )
            reader = StreamReader(stream, source, index, h.seed, h.shuffle_window, held_out)
            self.readers.append(reader)
            bits = np.zeros(index.units, dtype=bool)
            bits[held_out] = True
            val = [
                reader.example((unit, which, record))
                for unit, record in reader.records(np.packbits(bits))
                for which in range(stream.multiplicity)
            ]
            stream_report = self.val_reports[stream.label] = EncodingReport()
            for encoded in self.encode(val):
                self.val_report.add(encoded)
                stream_report.add(encoded)
                if "dropped" not in encoded:
                    self.val_set.append(encoded)
            skipped = ", ".join(f"{n} {reason}" for reason, n in index.skipped.items()) or "none"
            log.info(
                "stream %s: %d units, %d held out, skipped: %s",
                stream.label,
                index.units,
                len(held_out),
                skipped,
            )
        self.counts = self.plan_counts()
        log.info("epoch plan: %s", dict(zip([s.label for s in self.streams], self.counts)))
        log.info("validation set: %s", self.val_report.summary())

    def check_lengths(self) -> list[Optional[dict]]:
        """Encode each trained stream's training examples (all of them, or the first
        :data:`LENGTH_CHECK_EXAMPLES` of epoch 0's shuffled order) and count what ``max_length``
        loses: examples dropped, and examples left with no response token (no loss on them).

        Training examples are otherwise encoded only as they are read, so without this a run
        whose every example is too long would train on nothing for a whole epoch. Raises a
        ValueError naming every stream and its counts when no example is kept; warns about a
        stream that loses more than half its examples. ``setup("fit")`` calls it under a Trainer.
        Returns a :meth:`data_report` ``length_check`` per stream (None: left out of the epoch).
        """
        h = self.hparams
        checks: list[Optional[dict]] = []
        for reader, count in zip(self.readers, self.counts):
            checks.append(self._length_check(reader) if count else None)
        self.length_checks = checks
        trained = [(r, c) for r, c in zip(self.readers, checks) if c is not None]
        if not any(c["kept"] for _, c in trained):
            streams = "; ".join(
                f"{r.stream.label} ({r.stream.path}): {_stream_counts(r, c)}" for r, c in trained
            )
            truncate = ", or set overflow: truncate" if h.overflow == "drop" else ""
            raise ValueError(
                f"nothing to train on: no training example keeps a response token within "
                f"max_length {h.max_length} (overflow {h.overflow}). {streams}. Raise max_length "
                f"above the prompts' length (`data stats` shows the lengths){truncate}, or check "
                "that the files hold the records the streams expect"
            )
        for reader, check in trained:
            lost = check["examples"] - check["kept"]
            if 2 * lost > check["examples"]:
                rank_zero_warn(
                    f"stream {reader.stream.label}: {lost} of {check['examples']} training "
                    f"examples{_checked(check)} lost to max_length {h.max_length} "
                    f"({_reasons(check['dropped'])}); raise max_length to train on them"
                )
        return checks

    def _length_check(self, reader: StreamReader) -> dict:
        """What ``max_length`` does to a stream's first training examples (see
        :meth:`check_lengths`)."""
        examples = min(reader.size, LENGTH_CHECK_EXAMPLES)
        items = reader.items(0, 0, examples)
        dropped: Counter = Counter()
        truncated = kept = 0
        while block := list(islice(items, 512)):
            for encoded in self.encode([reader.example(item) for item in block]):
                if "dropped" in encoded:
                    dropped[encoded["dropped"]] += 1
                elif all(label == IGNORE_INDEX for label in encoded["labels"]):
                    dropped[NO_RESPONSE] += 1
                else:
                    kept += 1
                    truncated += encoded["truncated"]
        return {
            "max_length": self.hparams.max_length,
            "examples": examples,
            "pass_examples": reader.size,
            "dropped": dict(dropped),
            "truncated": truncated,
            "kept": kept,
        }

    def plan_counts(self) -> list[int]:
        """Examples each stream gives an epoch (see ``data/mixing.py``)."""
        sizes = [reader.size for reader in self.readers]
        for reader, size in zip(self.readers, sizes):
            stream = reader.stream
            if size == 0 and stream.weight != 0 and stream.count != 0:
                raise ValueError(
                    f"stream {stream.label} ({stream.path}) has no usable examples: "
                    f"{_stream_counts(reader)}"
                )
        if any(s.count is not None for s in self.streams):
            return [
                s.count * s.multiplicity if s.count is not None else size
                for s, size in zip(self.streams, sizes)
            ]
        weights = [1.0 if s.weight is None else s.weight for s in self.streams]
        rule = self.stop_rule
        counts = epoch_counts(sizes, weights, rule, self.hparams.examples_per_epoch)
        starved = [s.label for s, w, c in zip(self.streams, weights, counts) if w > 0 and c == 0]
        if starved:
            raise ValueError(
                f"stream(s) {starved} have a positive weight but get 0 examples an epoch "
                f"({rule} rule, epoch counts {counts}): raise their weight or "
                "examples_per_epoch, or set their weight to 0 to leave them out on purpose"
            )
        for stream, size, count in zip(self.streams, sizes, counts):
            passes = count / size if size else 0.0
            if passes > REPEAT_WARNING or (count and 1 - passes > UNSEEN_WARNING):
                what = (
                    f"each example is seen about {passes:.1f} times"
                    if passes > REPEAT_WARNING
                    else f"{1 - passes:.0%} of its examples are left unseen"
                )
                rank_zero_warn(
                    f"stream {stream.label}: {what} an epoch ({count} of {size} under the {rule} "
                    "rule and these weights). Leave out weights and stop to train on every "
                    "example once an epoch, as the paper does."
                )
        return counts

    @property
    def stop_rule(self) -> StopRule:
        """The rule in force: ``stop`` if given; else ``total`` when a stream has a weight or
        ``examples_per_epoch`` is set; else every example once an epoch (the paper's epochs)."""
        h = self.hparams
        if h.stop is not None:
            return h.stop
        if h.examples_per_epoch is not None or any(s.weight is not None for s in self.streams):
            return "total"
        return "all_exhausted_without_replacement"

    def encode(self, examples: list) -> list[dict]:
        return self.encoder()(examples)

    def encoder(self) -> Callable[[list], list[dict]]:
        """Examples -> encoded dicts with this module's settings (a plain function, for workers)."""
        h = self.hparams
        return functools.partial(
            encode_examples,
            self.tokenizer,
            max_length=h.max_length,
            overflow=h.overflow,
            template=h.template,
        )

    def _read_predict_file(self) -> list[dict]:
        h = self.hparams
        if h.predict_file is None:
            raise ValueError(
                "predict needs --data.predict_file (JSONL of instructions, or text with --data.predict_direction)"
            )
        if h.predict_direction:
            src, _, tgt = h.predict_direction.partition("-")
            instruction = translation_prompt_instruction(src, tgt)
            lines = list(enumerate(read_lines(h.predict_file), start=1))
            empty = [number for number, line in lines if not line.strip()]
            if empty:
                shown = ", ".join(str(n) for n in empty[:PLACES_SHOWN])
                rank_zero_warn(
                    f"{h.predict_file}: {len(empty)} empty line(s) skipped, not translated "
                    f"(line {shown}{', ...' if len(empty) > PLACES_SHOWN else ''}); "
                    "a prediction's id is its line's index from 0, so ids skip them"
                )
            return [
                {
                    "id": number - 1,
                    "instruction": instruction,
                    "input": line,
                    "prompt": self.prompt(instruction, line),
                }
                for number, line in lines
                if line.strip()
            ]
        if Path(h.predict_file).suffix not in (".jsonl", ".json"):
            raise ValueError(
                f"{h.predict_file}: a text file needs --data.predict_direction (e.g. en-zh); "
                "instructions must be .jsonl or .json"
            )
        examples = read_instructions(h.predict_file, require_output=False)
        return [
            {
                "id": i,
                "instruction": e.instruction,
                "input": e.input,
                "prompt": self.prompt(e.instruction, e.input),
            }
            for i, e in enumerate(examples)
        ]

    def prompt(self, instruction: str, input: str = "") -> str:
        """The prompt the model is given at generation time, in the configured template."""
        return render_prompt(instruction, input, self.hparams.template, self.tokenizer)

    # --- loaders --------------------------------------------------------------------------
    def collate_fn(self):
        h = self.hparams
        if h.batching == "pack":
            return PackCollator(self.tokenizer.pad_token_id, h.pack_length, h.pad_to_multiple_of)
        return PadCollator(self.tokenizer.pad_token_id, h.pad_to_multiple_of)

    def train_dataset(self, rank: int = 0, world_size: int = 1) -> MixtureDataset:
        """The batches of ``rank`` among ``world_size`` (``setup`` first)."""
        h = self.hparams
        return MixtureDataset(
            self.readers,
            self.counts,
            rank,
            world_size,
            max(1, h.num_workers),
            h.batch_size,
            h.batching,
            h.group_batches,
            self.encoder(),
            self.collate_fn(),
            self.tokenizer.pad_token_id,
            h.seed,
            pack_length=h.pack_length if h.batching == "pack" else None,
        )

    def train_dataloader(self) -> ResumableLoader:
        dataset = self.train_dataset(*self._rank_and_world_size())
        return ResumableLoader(
            dataset, self.position, self.hparams.num_workers, self._trainer_epoch
        )

    def _rank_and_world_size(self) -> tuple[int, int]:
        """This process's rank and the number of ranks (0 and 1 without a trainer)."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _trainer_epoch(self) -> Optional[int]:
        return self.trainer.current_epoch if self.trainer is not None else None

    def train_examples(self, count: int, rank: int = 0, world_size: int = 1) -> list[dict]:
        """The first ``count`` encoded examples of epoch 0 in the order ``rank`` trains on them
        (for tests and baselines that need the exact training data)."""
        self.setup("fit")
        examples: list[dict] = []
        for batch in self.train_dataset(rank, world_size).encoded_batches(epoch=0, start=0):
            examples += [e for e in batch if "dropped" not in e]
            if len(examples) >= count:
                break
        return examples[:count]

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            self.val_set,
            batch_size=h.eval_batch_size or h.batch_size,
            shuffle=False,
            num_workers=h.num_workers,
            collate_fn=self.collate_fn(),
            worker_init_fn=ignore_sigterm if h.num_workers else None,
        )

    def predict_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            self.predict_set,
            batch_size=h.eval_batch_size or h.batch_size,
            shuffle=False,
            collate_fn=_records,
        )

    # --- the data position ------------------------------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Count a training batch as consumed when the training step takes it (the loader has
        prefetched the next one by then), and add its report to the epoch's."""
        report = batch.pop("report", None) if isinstance(batch, dict) else None
        if report is not None and (self.trainer is None or self.trainer.training):
            self.position.batches += 1
            self.train_report.truncated += report["truncated"]
            self.train_report.encoded += report["examples"]
            self.train_report.dropped.update(report["dropped"])
        return batch

    def _plan(self) -> dict:
        """What a position means: in another plan, the same position points at other examples."""
        h = self.hparams
        rank, world_size = self._rank_and_world_size()
        return {
            "num_workers": h.num_workers,
            "world_size": world_size,
            "batch_size": h.batch_size,
            "seed": h.seed,
            "counts": list(self.counts),
            "batches_per_epoch": len(self.train_dataset(rank, world_size)),
            "batching": h.batching,
            "group_batches": h.group_batches,
            "pack_length": h.pack_length,
        }

    def state_dict(self) -> dict:
        """The data position, what it means (``plan``, compared on resume) and the whole
        :meth:`data_plan` (under :data:`DATA_PLAN_KEY`, read by ``export``)."""
        plan = self._plan()
        return {
            "epoch": self.position.epoch,
            "batches": self.position.batches,
            "plan": plan,
            DATA_PLAN_KEY: self.data_plan(plan["batches_per_epoch"]),
        }

    # --- the run record -----------------------------------------------------------------------
    def data_plan(self, batches_per_epoch: Optional[int] = None) -> dict:
        """What this module trains on: streams and shares, epoch counts, stop rule, seed and
        batching, as plain values (``run_record.DataPlan``; the counts after ``setup``).
        ``batches_per_epoch``: this rank's, when the caller has counted them already."""
        h = self.hparams
        planned = bool(self.readers) and len(self.counts) == len(self.streams)
        counts = list(self.counts) if planned else [None] * len(self.streams)
        counted = any(s.count is not None for s in self.streams)
        rank, world_size = self._rank_and_world_size()
        return {
            "datamodule": f"{type(self).__module__}.{type(self).__qualname__}",
            "streams": [
                {
                    "name": s.label,
                    "kind": s.kind,
                    "lang": s.lang,
                    "path": s.path,
                    "format": s.format,
                    "direction": s.direction if s.kind == "parallel" else None,
                    "weight": s.weight,
                    "count": s.count,
                    "epoch_examples": count,
                }
                for s, count in zip(self.streams, counts)
            ],
            "epoch_examples": sum(counts) if planned else None,
            "stop": None if counted else self.stop_rule,
            "examples_per_epoch": h.examples_per_epoch,
            "seed": h.seed,
            "max_length": h.max_length,
            "overflow": h.overflow,
            "dedupe": h.dedupe,
            "val_examples_per_stream": h.val_examples_per_stream,
            "batching": {
                "mode": h.batching,
                "batch_size": h.batch_size,
                "group_batches": h.group_batches,
                "pack_length": h.pack_length,
                "pad_to_multiple_of": h.pad_to_multiple_of,
                "num_workers": h.num_workers,
                "world_size": world_size,
                "batches_per_epoch": batches_per_epoch
                if batches_per_epoch is not None or not planned
                else len(self.train_dataset(rank, world_size)),
            },
        }

    def data_report(self) -> dict:
        """What reading and encoding did so far (``run_record.DataReport``): per stream the units
        read, skipped (by reason, with the first places), exact duplicates kept, byte-order marks
        stripped, held out, one pass's examples, an epoch's examples and how many times the epoch
        goes through the pass, the validation examples truncated or dropped, and the
        ``length_check`` of :meth:`check_lengths` (None before it ran, or for a stream left out
        of the epoch); the training examples this process consumed (encoded as they are read, so
        counted as training goes)."""
        streams = []
        counts = (
            self.counts if len(self.counts) == len(self.readers) else [None] * len(self.readers)
        )
        checks = self.length_checks or [None] * len(self.readers)
        for reader, epoch_examples in zip(self.readers, counts):
            index, label = reader.index, reader.stream.label
            usable = index.usable_units  # a pass over every unit's bit: counted once
            streams.append(
                {
                    "name": label,
                    "path": reader.stream.path,
                    "units": index.units,
                    "usable": usable,
                    "skipped": dict(index.skipped),
                    "skipped_at": {reason: list(at) for reason, at in index.skipped_at.items()},
                    "duplicates": index.duplicates,
                    "duplicates_at": list(index.duplicates_at),
                    "byte_order_marks": list(index.byte_order_marks),
                    "held_out": usable - reader.size // reader.stream.multiplicity,
                    "pass_examples": reader.size,
                    "epoch_examples": epoch_examples,
                    "passes_per_epoch": (
                        round(epoch_examples / reader.size, 4)
                        if epoch_examples is not None and reader.size
                        else None
                    ),
                    "validation": _counts(self.val_reports.get(label, EncodingReport())),
                    "length_check": checks[len(streams)],
                }
            )
        return {
            "streams": streams,
            "validation": _counts(self.val_report),
            "training": _counts(self.train_report),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the position. Under another plan (other devices, workers, batch size, batching
        or data) an exact continuation does not exist: the epoch continues after the same share
        of it, and a warning says so."""
        epoch, batches = state["epoch"], state["batches"]
        plan, saved = self._plan(), state["plan"]
        # keys a checkpoint lacks (written before they were planned) are not compared
        changed = {
            k: (saved[k], v)
            for k, v in plan.items()
            if k != "batches_per_epoch" and k in saved and saved[k] != v
        }
        if changed:
            batches = batches * plan["batches_per_epoch"] // saved["batches_per_epoch"]
            log.warning(
                "the data plan differs from the checkpoint's: %s (saved, now). Epoch %d continues after "
                "the same share of it (batch %d of %d), but not with the same examples: some of this "
                "epoch's may repeat or be missed. Resume with the same data, seed, batch size, batching, "
                "num_workers and number of devices to continue exactly.",
                changed,
                epoch,
                batches,
                plan["batches_per_epoch"],
            )
        self.position.epoch, self.position.batches = epoch, batches

    def teardown(self, stage: str) -> None:
        if stage == "fit" and (self.train_report.encoded or self.train_report.dropped):
            log.info("training data consumed: %s", self.train_report.summary())


def _records(records: list[dict]) -> list[dict]:
    return records


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"


def _checked(check: dict) -> str:
    """`` checked`` when the length check encoded only a stream's first examples."""
    return "" if check["examples"] == check["pass_examples"] else " checked"


def _stream_counts(reader: StreamReader, check: Optional[dict] = None) -> str:
    """A stream's figures in a message: units read, skipped by reason, held out, and (after
    :meth:`MuITDataModule.check_lengths`) the training examples dropped for length and kept."""
    index = reader.index
    held_out = index.usable_units - reader.size // reader.stream.multiplicity
    text = f"{index.units} units read, skipped: {_reasons(index.skipped)}, {held_out} held out"
    if check is None:
        return text
    lost = sum(check["dropped"].values())
    return (
        f"{text}, {check['examples']} of {check['pass_examples']} training examples checked: "
        f"{lost} dropped for length ({_reasons(check['dropped'])}), {check['kept']} kept"
    )


def _counts(report: EncodingReport) -> dict:
    return {
        "encoded": report.encoded,
        "truncated": report.truncated,
        "dropped": dict(report.dropped),
    }


def saved_data_plan(checkpoint: dict) -> Optional[dict]:
    """The data plan a checkpoint's DataModule saved, or None (a checkpoint written before plans
    were saved, or without this package's DataModules). Lightning keeps a DataModule's
    ``state_dict`` under its class name: :class:`MuITDataModule` and its subclasses."""
    classes, names = [MuITDataModule], set()
    while classes:
        cls = classes.pop()
        names.add(cls.__qualname__)
        classes += cls.__subclasses__()
    for name in sorted(names & set(checkpoint)):
        state = checkpoint[name]
        if isinstance(state, dict) and isinstance(state.get(DATA_PLAN_KEY), dict):
            return state[DATA_PLAN_KEY]
    return None


def apply_allocation(streams: list[Stream], path: str) -> list[Stream]:
    """Streams with the counts or weights of an allocation file (``scaling.read_allocation``).

    Each entry names a stream by kind, language and (optionally) direction ``en-zh`` or
    ``zh-en``; it must match exactly one configured stream, which must not set its own share.
    """
    document = read_allocation(path)
    streams = list(streams)
    for position, entry in enumerate(document["streams"]):
        where = f"{path}: streams[{position}]"
        matches = [i for i, s in enumerate(streams) if _allocation_matches(s, entry)]
        if len(matches) != 1:
            found = "no stream" if not matches else f"{len(matches)} streams"
            raise ValueError(
                f"{where} ({entry['kind']}, {entry['lang']}, {entry.get('direction', 'any direction')}) "
                f"matches {found}; configured streams: {[s.label for s in streams]}"
            )
        stream = streams[matches[0]]
        if stream.count is not None or stream.weight is not None:
            raise ValueError(
                f"{where}: stream {stream.label} already sets its count or weight in the config"
            )
        streams[matches[0]] = dataclasses.replace(
            stream, count=entry.get("count"), weight=entry.get("weight")
        )
    return streams


def _allocation_matches(stream: Stream, entry: dict) -> bool:
    if stream.kind != entry["kind"] or stream.lang != entry["lang"]:
        return False
    direction = entry.get("direction")
    if direction is None:
        return True
    wanted = {f"en-{stream.lang}": "en-x", f"{stream.lang}-en": "x-en"}.get(direction)
    return wanted is not None and stream.direction in (wanted, "both")


class CoITDataModule(MuITDataModule):
    """Cross-lingual instruction tuning for one target language (x-LLaMA): three streams.

    English instructions, the same instructions translated into the target language, and
    parallel pairs as translation instructions, mixed by ``weights``. Every other argument is
    :class:`MuITDataModule`'s.

    Args:
        language: target language code (see ``lightning_xllama.languages``).
        english_instructions: Alpaca JSON or JSONL file of English instructions.
        translated_instructions: the same instructions translated into the target language.
        parallel: the parallel corpus: an aligned-text prefix (``{parallel}.en`` and
            ``{parallel}.{language}``, Moses/OPUS) or a ``.tsv`` file (WikiMatrix).
        weights: share of each stream (``english``, ``translated``, ``parallel``) as ratios; a
            stream asked for more than it holds is repeated. Every stream needs an entry (0 leaves
            it out). Unset (the paper's way): every example of every stream once an epoch.
        direction: translation direction of the pairs: ``en-x``, ``x-en`` or ``both``.
        min_score: with a TSV corpus that has a score column, skip pairs scoring below it.
    """

    STREAMS = ("english", "translated", "parallel")

    def __init__(
        self,
        language: str,
        english_instructions: str,
        translated_instructions: str,
        parallel: str,
        weights: Optional[dict[str, float]] = None,
        direction: Direction = "en-x",
        min_score: Optional[float] = None,
        **kwargs,
    ):
        import_language_modules(kwargs.get("language_modules") or [])
        weighted = weights is not None
        weights = dict(weights) if weighted else {name: None for name in self.STREAMS}
        unknown = set(weights) - set(self.STREAMS)
        if unknown:
            raise ValueError(
                f"unknown stream(s) in weights: {sorted(unknown)}; expected {self.STREAMS}"
            )
        missing = [name for name in self.STREAMS if name not in weights]
        if missing:
            raise ValueError(
                f"weights has no entry for stream(s) {missing}: give all of {list(self.STREAMS)} "
                "a weight (0 leaves a stream out), or leave weights unset for 1 each"
            )
        share = {name: float(weights[name]) if weighted else None for name in self.STREAMS}
        streams = [
            Stream(
                "instructions", "en", english_instructions, weight=share["english"], name="english"
            ),
            Stream(
                "instructions",
                language,
                translated_instructions,
                weight=share["translated"],
                name="translated",
            ),
            Stream(
                "parallel",
                language,
                parallel,
                direction,
                weight=share["parallel"],
                min_score=min_score,
                name="parallel",
            ),
        ]
        super().__init__(streams=streams, **kwargs)
