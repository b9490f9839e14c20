"""The DataModules: MuIT mixes any number of streams (m-LLaMA); CoIT is its one-language case.

A stream is (kind, language, source, direction): Alpaca instructions in one language, or
parallel pairs with English turned into translation instructions. Streams are indexed once
(``prepare_data``), mixed by weight, count or allocation file under a stop rule
(``data/plan.py``, ``data/mixing.py``), read lazily in the shuffled order of ``data/streams.py``,
templated, tokenised with the prompt masked out, and batched (padded, length-grouped or packed) in
worker processes (``data/loader.py``). A few examples of each stream are held out for the
validation loss (``data/holdout.py``), or a validation file is read instead. ``paper: true`` turns
the settings where the paper's run differs from the package's defaults to the paper's
(``data/paper.py``). The data position is saved in checkpoints and restored
exactly. The modules here keep Lightning's hooks; what they record is built by ``data/report.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Callable, Optional, Union

import lightning as L
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.encoding import EncodingReport, Overflow, encode_examples
from lightning_xllama.data.holdout import read_stream
from lightning_xllama.data.kinds import PairRules
from lightning_xllama.data.length_check import judge_length_checks, length_checks
from lightning_xllama.data.loader import (
    BATCHING_MODES,
    FLAT_BATCHING_KEYS,
    Batching,
    BatchingMode,
    DataPosition,
    MixtureDataset,
    ResumableLoader,
    ignore_sigterm,
    resolve_batching,
)
from lightning_xllama.data.mixing import StopRule
from lightning_xllama.data.packing import PackCollator
from lightning_xllama.data.paper import resolve_paper_settings
from lightning_xllama.data.plan import DataPlan, apply_allocation
from lightning_xllama.data.predict import read_predict_file
from lightning_xllama.data.report import plan_record, report_record, stream_counts_text
from lightning_xllama.data.sources import read_instructions
from lightning_xllama.data.streams import Stream, StreamReader
from lightning_xllama.data.tasks import Direction
from lightning_xllama.languages import import_language_modules
from lightning_xllama.prompts import InstructionRule, Template, render_prompt
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.runtime.seeds import data_seed

__all__ = ["Batching", "CoITDataModule", "MuITDataModule", "apply_allocation", "saved_data_plan"]

log = logging.getLogger(__name__)

VAL_FILE_LABEL = "val_file"
"""The validation report's entry for the examples of ``val_file``."""
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
            most a tenth of the stream). Unset: 64, or 0 with ``paper: true`` or a ``val_file``
            (the paper's run took none from training).
        max_length: longest example in tokens (the paper: 512). ``fit`` encodes each stream's
            first training examples before step 1: it stops when none keeps a response token
            within the limit, and warns about a stream that loses more than half of them.
        overflow: what to do with a longer example: ``truncate`` its response (one whose prompt
            alone reaches ``max_length`` is dropped), ``drop`` it, or ``mask``: truncate it as
            the paper's ``train.py`` does, so one whose prompt alone reaches ``max_length`` is
            kept with every label masked (no loss). All counted and reported. Unset:
            ``truncate``, or ``mask`` with ``paper: true``.
        template: ``alpaca`` (the package's Alpaca prompt), ``alpaca_official`` (the paper's: ends
            at ``### Response:``, the response tokenised with the prompt as the paper's
            ``train.py`` does) or ``chat`` (the tokenizer's chat template). Saved in
            ``run.json``; the evaluations prompt in it. Unset: ``alpaca``, or
            ``alpaca_official`` with ``paper: true``.
        batching: how examples become micro-batches: a mode (``pad``, ``group_by_length`` or
            ``pack``) or the group ``{mode, pack_length, group_batches, pad_to_multiple_of}``
            (:class:`~lightning_xllama.data.loader.Batching`: ``batching: {mode: pack,
            pack_length: 1024}`` in a config, ``--data.init_args.batching.pack_length 1024`` on
            the command line).
        pack_length: the same as ``batching.pack_length``, kept for earlier configs (with a mode
            in ``batching``; a group and a different value here is an error).
        group_batches: the same as ``batching.group_batches`` (default 64), kept likewise.
        batch_size: examples per micro-batch on each device (with ``pack`` and a
            ``pack_length``: on average; a buffer holds ``group_batches * batch_size`` examples).
        pad_to_multiple_of: the same as ``batching.pad_to_multiple_of`` (default 1), kept likewise.
        eval_batch_size: micro-batch size for validation and prediction (default batch_size).
        num_workers: worker processes that read, tokenise and batch; part of the data plan:
            resume with the same number (and devices) to continue exactly.
        seed: seeds the held-out split, the paraphrases and every shuffle; None: the run's
            ``seed_everything`` (:func:`lightning_xllama.runtime.seeds.data_seed`).
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
        paper: the data as the paper's run had it (x-LLM ``train.py``, ``translation.py``):
            translation instructions ``official``, ``strip_pairs``, nothing held out of the
            training data (``val_examples_per_stream`` 0: validation from ``val_file``, or none),
            ``overflow: mask``, the slow tokenizer, and template ``alpaca_official`` unless one is
            given. A setting given with another value than it sets is refused. Recorded in
            ``run.json`` (``data_plan``).
        translation_instructions: how a pair gets its instruction: ``package`` (one of the
            package's 22 paraphrases drawn per pair) or ``official`` (the paper's 33, the one of
            the pair's 0-based line ``i`` in its file: ``[i % 33]``, with the paper's language
            names). Unset: ``package``, or ``official`` with ``paper: true``.
        strip_pairs: strip surrounding whitespace (spaces, tabs) of both sentences of a pair, as
            the paper's ``translation.py`` does; otherwise only the line break is removed. Unset:
            false, or true with ``paper: true``.
        use_fast_tokenizer: load the fast (Rust) tokenizer; false: the slow one (the paper's
            ``use_fast=False``; the two may split some texts differently). Unset: true, or false
            with ``paper: true``. The model's own tokenizer, which the evaluations generate with,
            stays the fast one, as the paper's ``inference.py`` loaded it.
        val_file: a JSON or JSONL file of Alpaca records whose examples form the validation set
            (besides any held out of the streams). Without it and with nothing held out there is
            no validation loss and no validation pass, so the evaluation callbacks, which run on
            validation passes, do not run during ``fit``: run ``evaluate`` on the model instead.
    """

    def __init__(
        self,
        streams: list[Stream],
        allocation: Optional[str] = None,
        stop: Optional[StopRule] = None,
        examples_per_epoch: Optional[int] = None,
        val_examples_per_stream: Optional[int] = None,
        max_length: int = 512,
        overflow: Optional[Overflow] = None,
        template: Optional[Template] = None,
        batching: Union[BatchingMode, Batching] = "pad",
        pack_length: Optional[int] = None,
        group_batches: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        batch_size: int = 4,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        seed: Optional[int] = None,
        dedupe: bool = False,
        shuffle_window: int = 8192,
        cache_dir: Optional[str] = None,
        language_modules: Optional[list[str]] = None,
        tokenizer: Optional[str] = None,
        predict_file: Optional[str] = None,
        predict_direction: Optional[str] = None,
        paper: bool = False,
        translation_instructions: Optional[InstructionRule] = None,
        strip_pairs: Optional[bool] = None,
        use_fast_tokenizer: Optional[bool] = None,
        val_file: Optional[str] = None,
    ):
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        self.batching = resolve_batching(
            batching,
            type(self).__name__,
            pack_length=pack_length,
            group_batches=group_batches,
            pad_to_multiple_of=pad_to_multiple_of,
        )
        self._check_ranges(
            examples_per_epoch=examples_per_epoch,
            val_examples_per_stream=val_examples_per_stream,
            max_length=max_length,
            pack_length=self.batching.pack_length,
            group_batches=self.batching.group_batches,
            pad_to_multiple_of=self.batching.pad_to_multiple_of,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            shuffle_window=shuffle_window,
        )
        resolved = resolve_paper_settings(type(self).__name__, paper, arguments, val_file)
        arguments.update(resolved)
        self.rules = PairRules(resolved["translation_instructions"], resolved["strip_pairs"])
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
        self.plan = DataPlan(self.streams, stop, examples_per_epoch)
        self._check_batching(max_length)
        # plain values only (a dataclass breaks weights_only loading of a checkpoint)
        self.save_hyperparameters(ignore=["streams", *FLAT_BATCHING_KEYS])
        self.hparams["batching"] = dataclasses.asdict(self.batching)
        self.hparams["streams"] = [dataclasses.asdict(s) for s in self.streams]
        self.hparams["seed"] = data_seed(seed)  # None: the run's seed
        self.hparams.update(resolved)  # the values in force (None: the mode's)
        # The settings in force. Under LightningCLI the hyperparameters are the config of the class
        # built (a subclass's own arguments): this class's are added where that config lacks them.
        for name in ("batching", "streams", "seed"):
            arguments[name] = self.hparams[name]
        self.settings = AttributeDict(
            {k: v for k, v in arguments.items() if k not in FLAT_BATCHING_KEYS}
        )
        for name, value in self.settings.items():
            self.hparams.setdefault(name, value)
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
            "val_examples_per_stream": (0, True),
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

    def _check_batching(self, max_length: int) -> None:
        mode, pack_length = self.batching.mode, self.batching.pack_length
        if mode not in BATCHING_MODES:
            raise ValueError(f"batching must be 'pad', 'group_by_length' or 'pack', got {mode!r}")
        if pack_length is not None and pack_length < max_length:
            raise ValueError(
                f"pack_length ({pack_length}) must hold the longest example (max_length {max_length})"
            )

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.settings.tokenizer is None:
                raise ValueError(
                    f"{type(self).__name__} needs a tokenizer (the CLI links it to the model)"
                )
            self._tokenizer = load_tokenizer(
                self.settings.tokenizer, use_fast=self.settings.use_fast_tokenizer
            )
        return self._tokenizer

    # --- reading --------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Index every source once per node (downloading Hugging Face data sets)."""
        h = self.settings
        for stream in self.streams:
            stream.index(stream.open(h.cache_dir), h.dedupe, h.cache_dir)

    def setup(self, stage: str) -> None:
        """Read the streams (index, held-out validation set, epoch plan). Under a Trainer's
        ``fit``, also :meth:`check_lengths` before step 1."""
        h = self.settings
        if stage == "predict":
            self.predict_set = read_predict_file(h.predict_file, h.predict_direction, self.prompt)
            return
        if not self.readers:
            self._read_streams()
            if stage == "fit" and self.trainer is not None and not self.val_set:
                rank_zero_warn(
                    f"{type(self).__name__}: no validation examples (val_examples_per_stream "
                    f"{h.val_examples_per_stream}, no val_file): fit has no validation loss and "
                    "no validation pass, so evaluation callbacks do not run during it; set "
                    "val_file, or run `evaluate` on the trained model"
                )
        if stage == "fit" and self.trainer is not None and self.length_checks is None:
            self.check_lengths()

    def _read_streams(self) -> None:
        h = self.settings
        self.val_set, self.val_report, self.val_reports = [], EncodingReport(), {}
        for stream in self.streams:
            reader, held_out = read_stream(
                stream,
                h.cache_dir,
                h.dedupe,
                h.seed,
                h.shuffle_window,
                h.val_examples_per_stream,
                self.rules,
            )
            self.readers.append(reader)
            stream_report = self.val_reports[stream.label] = EncodingReport()
            for encoded in self.encode(held_out):
                self.val_report.add(encoded)
                stream_report.add(encoded)
                if "dropped" not in encoded:
                    self.val_set.append(encoded)
        if h.val_file is not None:
            file_report = self.val_reports[VAL_FILE_LABEL] = EncodingReport()
            for encoded in self.encode(list(read_instructions(h.val_file))):
                self.val_report.add(encoded)
                file_report.add(encoded)
                if "dropped" not in encoded:
                    self.val_set.append(encoded)
        self.counts = self.plan_counts()
        log.info("epoch plan: %s", dict(zip([s.label for s in self.streams], self.counts)))
        log.info("validation set: %s", self.val_report.summary())

    def check_lengths(self) -> list[Optional[dict]]:
        """Encode each trained stream's training examples (all of them, or the first
        ``LENGTH_CHECK_EXAMPLES`` of epoch 0's shuffled order: ``data/length_check.py``) and
        count what ``max_length`` loses. Raises a ValueError naming every stream and its counts
        when no example is kept; warns about a stream that loses more than half its examples.
        ``setup("fit")`` calls it under a Trainer. Returns a :meth:`data_report` ``length_check``
        per stream (None: left out of the epoch)."""
        h = self.settings
        self.length_checks = length_checks(self.readers, self.counts, self.encoder(), h.max_length)
        judge_length_checks(self.readers, self.length_checks, h.max_length, h.overflow)
        return self.length_checks

    def plan_counts(self) -> list[int]:
        """Examples each stream gives an epoch (:class:`~lightning_xllama.data.plan.DataPlan`),
        its warnings shown once."""
        sizes = [reader.size for reader in self.readers]
        for reader, size in zip(self.readers, sizes):
            stream = reader.stream
            if size == 0 and stream.weight != 0 and stream.count != 0:
                raise ValueError(
                    f"stream {stream.label} ({stream.path}) has no usable examples: "
                    f"{stream_counts_text(reader)}"
                )
        counts = self.plan.counts(sizes)
        for warning in self.plan.warnings(sizes, counts):
            rank_zero_warn(warning)
        return counts

    @property
    def stop_rule(self) -> StopRule:
        """The rule in force (:attr:`DataPlan.stop_rule`)."""
        return self.plan.stop_rule

    def encode(self, examples: list) -> list[dict]:
        return self.encoder()(examples)

    def encoder(self) -> Callable[[list], list[dict]]:
        """Examples -> encoded dicts with this module's settings (a plain function, for workers)."""
        h = self.settings
        return functools.partial(
            encode_examples,
            self.tokenizer,
            max_length=h.max_length,
            overflow=h.overflow,
            template=h.template,
        )

    def prompt(self, instruction: str, input: str = "") -> str:
        """The prompt the model is given at generation time, in the configured template."""
        return render_prompt(instruction, input, self.settings.template, self.tokenizer)

    # --- loaders --------------------------------------------------------------------------
    def collate_fn(self):
        b = self.batching
        if b.mode == "pack":
            return PackCollator(self.tokenizer.pad_token_id, b.pack_length, b.pad_to_multiple_of)
        return PadCollator(self.tokenizer.pad_token_id, b.pad_to_multiple_of)

    def train_dataset(self, rank: int = 0, world_size: int = 1) -> MixtureDataset:
        """The batches of ``rank`` among ``world_size`` (``setup`` first)."""
        h, b = self.settings, self.batching
        return MixtureDataset(
            self.readers,
            self.counts,
            rank,
            world_size,
            max(1, h.num_workers),
            h.batch_size,
            b.mode,
            b.group_batches,
            self.encoder(),
            self.collate_fn(),
            self.tokenizer.pad_token_id,
            h.seed,
            pack_length=b.pack_length if b.mode == "pack" else None,
        )

    def train_dataloader(self) -> ResumableLoader:
        dataset = self.train_dataset(*self._rank_and_world_size())
        return ResumableLoader(
            dataset, self.position, self.settings.num_workers, self._trainer_epoch
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
        h = self.settings
        return DataLoader(
            self.val_set,
            batch_size=h.eval_batch_size or h.batch_size,
            shuffle=False,
            num_workers=h.num_workers,
            collate_fn=self.collate_fn(),
            worker_init_fn=ignore_sigterm if h.num_workers else None,
        )

    def test_dataloader(self) -> DataLoader:
        """``test``: the held-out examples (``test/loss``); the evaluation callbacks read their
        own test sets."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        h = self.settings
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
            self.train_report.masked += report.get("masked", 0)
            self.train_report.encoded += report["examples"]
            self.train_report.dropped.update(report["dropped"])
        return batch

    def _plan(self) -> dict:
        """What a position means: in another plan, the same position points at other examples."""
        h, b = self.settings, self.batching
        rank, world_size = self._rank_and_world_size()
        return {
            "num_workers": h.num_workers,
            "world_size": world_size,
            "batch_size": h.batch_size,
            "seed": h.seed,
            "counts": list(self.counts),
            "batches_per_epoch": len(self.train_dataset(rank, world_size)),
            "batching": b.mode,
            "group_batches": b.group_batches,
            "pack_length": b.pack_length,
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

    # --- the run record -----------------------------------------------------------------------
    def data_plan(self, batches_per_epoch: Optional[int] = None) -> dict:
        """What this module trains on (``data/report.py``'s :func:`plan_record`; the counts after
        ``setup``). ``batches_per_epoch``: this rank's, when the caller has counted them already."""
        h, b = self.settings, self.batching
        planned = bool(self.readers) and len(self.counts) == len(self.streams)
        rank, world_size = self._rank_and_world_size()
        if batches_per_epoch is None and planned:
            batches_per_epoch = len(self.train_dataset(rank, world_size))
        return plan_record(
            f"{type(self).__module__}.{type(self).__qualname__}",
            self.streams,
            self.counts if planned else None,
            self.plan,
            {
                "seed": h.seed,
                "max_length": h.max_length,
                "overflow": h.overflow,
                "dedupe": h.dedupe,
                "val_examples_per_stream": h.val_examples_per_stream,
                "val_file": h.val_file,
                "paper": h.paper,
                "template": h.template,
                "translation_instructions": h.translation_instructions,
                "strip_pairs": h.strip_pairs,
                "use_fast_tokenizer": h.use_fast_tokenizer,
            },
            {
                "mode": b.mode,
                "batch_size": h.batch_size,
                "group_batches": b.group_batches,
                "pack_length": b.pack_length,
                "pad_to_multiple_of": b.pad_to_multiple_of,
                "num_workers": h.num_workers,
                "world_size": world_size,
                "batches_per_epoch": batches_per_epoch,
            },
        )

    def data_report(self) -> dict:
        """What reading and encoding did so far (``data/report.py``'s :func:`report_record`); the
        training examples this process consumed are counted as training goes."""
        planned = len(self.counts) == len(self.readers)
        return report_record(
            self.readers,
            self.counts if planned else None,
            self.length_checks,
            self.val_reports,
            self.val_report,
            self.train_report,
        )

    def teardown(self, stage: str) -> None:
        if stage == "fit" and (self.train_report.encoded or self.train_report.dropped):
            log.info("training data consumed: %s", self.train_report.summary())


def _records(records: list[dict]) -> list[dict]:
    return records


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


class CoITDataModule(MuITDataModule):
    """Cross-lingual instruction tuning for one target language (x-LLaMA): three streams.

    English instructions, the same instructions translated into the target language, and
    parallel pairs as translation instructions, mixed by ``weights``. The arguments after
    ``min_score`` are :class:`MuITDataModule`'s, documented there. A subclass (a language of its
    own, other defaults, an argument more) lists the arguments it takes and passes them on by
    name: see ``docs/extending.md``.

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
        allocation: see :class:`MuITDataModule`.
        stop: see :class:`MuITDataModule`.
        examples_per_epoch: see :class:`MuITDataModule`.
        val_examples_per_stream: records held out of each stream for the validation loss
            (unset: 64, or 0 with ``paper: true`` or a ``val_file``).
        max_length: longest example in tokens (the paper: 512).
        overflow: ``truncate`` a longer example's response, ``drop`` it, or ``mask`` (the paper's
            truncation: a prompt reaching ``max_length`` is kept, fully masked).
        template: ``alpaca``, ``alpaca_official`` or ``chat``.
        batching: a mode (``pad``, ``group_by_length``, ``pack``) or the group
            ``{mode, pack_length, group_batches, pad_to_multiple_of}``.
        pack_length: the same as ``batching.pack_length`` (earlier configs).
        group_batches: the same as ``batching.group_batches`` (earlier configs).
        pad_to_multiple_of: the same as ``batching.pad_to_multiple_of`` (earlier configs).
        batch_size: examples per micro-batch on each device.
        eval_batch_size: micro-batch size for validation and prediction (default batch_size).
        num_workers: worker processes that read, tokenise and batch.
        seed: seeds the held-out split, the paraphrases and every shuffle; None: the run's
            ``seed_everything`` (:func:`lightning_xllama.runtime.seeds.data_seed`).
        dedupe: skip repeated records within a stream (counted and reported).
        shuffle_window: records shuffled together in a stream.
        cache_dir: where source indexes and Hugging Face data sets are cached.
        language_modules: modules imported first, for languages they register.
        tokenizer: tokenizer folder or hub name; the CLI links it to the model's path.
        predict_file: input of ``predict`` (JSONL of instructions, or text with
            ``predict_direction``).
        predict_direction: ``src-tgt`` language codes (``en-zh``) when ``predict_file`` is text.
        paper: the data as the paper's run had it (see :class:`MuITDataModule`).
        translation_instructions: ``package`` (drawn paraphrases) or ``official`` (the paper's 33
            by line index).
        strip_pairs: strip surrounding whitespace of both sentences of a pair.
        use_fast_tokenizer: the fast tokenizer (true) or the slow one (the paper's).
        val_file: Alpaca records (JSON or JSONL) that form the validation set.
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
        allocation: Optional[str] = None,
        stop: Optional[StopRule] = None,
        examples_per_epoch: Optional[int] = None,
        val_examples_per_stream: Optional[int] = None,
        max_length: int = 512,
        overflow: Optional[Overflow] = None,
        template: Optional[Template] = None,
        batching: Union[BatchingMode, Batching] = "pad",
        pack_length: Optional[int] = None,
        group_batches: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        batch_size: int = 4,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        seed: Optional[int] = None,
        dedupe: bool = False,
        shuffle_window: int = 8192,
        cache_dir: Optional[str] = None,
        language_modules: Optional[list[str]] = None,
        tokenizer: Optional[str] = None,
        predict_file: Optional[str] = None,
        predict_direction: Optional[str] = None,
        paper: bool = False,
        translation_instructions: Optional[InstructionRule] = None,
        strip_pairs: Optional[bool] = None,
        use_fast_tokenizer: Optional[bool] = None,
        val_file: Optional[str] = None,
    ):
        share = self._shares(weights)
        streams = [  # plain values: built into streams after language_modules are imported
            dict(
                kind="instructions",
                lang="en",
                path=english_instructions,
                weight=share["english"],
                name="english",
            ),
            dict(
                kind="instructions",
                lang=language,
                path=translated_instructions,
                weight=share["translated"],
                name="translated",
            ),
            dict(
                kind="parallel",
                lang=language,
                path=parallel,
                direction=direction,
                weight=share["parallel"],
                min_score=min_score,
                name="parallel",
            ),
        ]
        super().__init__(
            streams=streams,
            allocation=allocation,
            stop=stop,
            examples_per_epoch=examples_per_epoch,
            val_examples_per_stream=val_examples_per_stream,
            max_length=max_length,
            overflow=overflow,
            template=template,
            batching=batching,
            pack_length=pack_length,
            group_batches=group_batches,
            pad_to_multiple_of=pad_to_multiple_of,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            dedupe=dedupe,
            shuffle_window=shuffle_window,
            cache_dir=cache_dir,
            language_modules=language_modules,
            tokenizer=tokenizer,
            predict_file=predict_file,
            predict_direction=predict_direction,
            paper=paper,
            translation_instructions=translation_instructions,
            strip_pairs=strip_pairs,
            use_fast_tokenizer=use_fast_tokenizer,
            val_file=val_file,
        )

    @classmethod
    def _shares(cls, weights: Optional[dict[str, float]]) -> dict[str, Optional[float]]:
        """Each stream's weight (None for all when ``weights`` is unset), checked."""
        if weights is None:
            return {name: None for name in cls.STREAMS}
        unknown = set(weights) - set(cls.STREAMS)
        if unknown:
            raise ValueError(
                f"unknown stream(s) in weights: {sorted(unknown)}; expected {cls.STREAMS}"
            )
        missing = [name for name in cls.STREAMS if name not in weights]
        if missing:
            raise ValueError(
                f"weights has no entry for stream(s) {missing}: give all of {list(cls.STREAMS)} "
                "a weight (0 leaves a stream out), or leave weights unset for 1 each"
            )
        return {name: float(weights[name]) for name in cls.STREAMS}
