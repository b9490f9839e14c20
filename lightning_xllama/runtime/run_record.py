"""The run record: one ``run.json`` saying what a training run was.

:class:`~lightning_xllama.callbacks.RunRecord` (on by default in the CLI) writes it on rank 0 into
the trainer's log dir (``lightning_logs/version_N/run.json``, beside the checkpoints and logs)
when ``fit`` starts, rewrites it at every checkpoint and when ``fit`` ends, and puts the same
record into each checkpoint under :data:`CHECKPOINT_KEY`. Every Hugging Face export (the
``export`` command and the ``HFExport`` callback) copies it into the exported folder.

This is the one file describing a run. Later features add their fields to :class:`RunRecordDict`
(and raise :data:`SCHEMA_VERSION` when a field changes meaning) rather than writing files of their
own. Readers ignore fields they do not know; :func:`read_run_record` refuses a newer schema.

Fields (``RunRecordDict``; every value is plain JSON):

- ``schema_version``: :data:`SCHEMA_VERSION` of the writer.
- ``status``: ``running`` (written at fit start or at a checkpoint), ``finished`` (fit ended),
  ``stopped`` (SIGTERM or Ctrl-C), ``diverged`` (a NaN or infinite loss or gradient norm stopped
  training, :class:`~lightning_xllama.training.divergence.TrainingDiverged`), ``failed`` (any other
  exception) or ``exported`` (rebuilt by the ``export`` command from a checkpoint without a
  record). Only a killed process (SIGKILL, out of memory) leaves ``running`` behind.
- ``error``: with ``diverged`` and ``failed``, the exception's one line (``diverged``: the step,
  the learning rate and what to try).
- ``last_saved_step``: with ``stopped``, the optimizer steps in the latest checkpoint this run
  saved (or the one it resumed from); null when none holds any of its steps.
- ``skipped_steps``: optimizer steps skipped for a non-finite loss or gradient norm
  (``XLlamaModule(on_nonfinite: skip_step)``).
- ``started`` / ``updated``: UTC times (ISO 8601) the run started and the record was last written.
- ``log_dir``: the trainer's log dir (where ``run.json`` lies); ``ckpt_path``: the checkpoint the
  fit resumed from, or null.
- ``global_step`` / ``epoch``: the optimizer steps done and the current epoch (from 0) when written.
- ``model_path``: the base model folder or hub name (``model_name_or_path``), as given;
  ``model_folder``: that folder as an absolute path (null for a hub name), so ``export`` finds the
  base model from any working directory.
- ``seeds``: ``seed_everything`` (the seed Lightning set for the run; null when none) and ``data``
  (the data module's seed: the held-out split, paraphrases and shuffles; it follows
  ``seed_everything`` unless the data module sets its own).
- ``template``: the prompt template (``alpaca``, ``alpaca_official`` or ``chat``); the evaluation
  callbacks and ``evaluate`` prompt in it.
- ``language_modules``: the modules the data module imported for the languages they register
  (``language_modules``, e.g. the demo's ``lightning_xllama.demo.languages``); ``evaluate``
  imports them before it resolves a language.
- ``pad_token``: which token pads batches and why (:func:`lightning_xllama.runtime.hf_loading.pad_token_choice`):
  ``token``, ``id``, ``reason``.
- ``data_plan``: the DataModule's plan (:class:`DataPlan`), the one its checkpoints save under
  ``data_plan`` in its state: ``datamodule`` (class path), ``streams`` (:class:`StreamPlan`: name,
  kind, lang, path, format, direction (null for instructions), weight, count, epoch_examples),
  ``epoch_examples`` (an epoch's examples, all streams), ``stop`` (the stop rule; null when the
  streams have counts), ``examples_per_epoch``, ``seed``, ``max_length``, ``overflow``,
  ``dedupe``, ``val_examples_per_stream``, ``val_file``, ``paper`` (the data as the paper's run
  had it), ``template``, ``translation_instructions``, ``strip_pairs``, ``use_fast_tokenizer``
  and ``batching`` (``mode``, ``batch_size``,
  ``group_batches``, ``pack_length``, ``pad_to_multiple_of``, ``num_workers``, ``world_size``,
  ``batches_per_epoch``).
- ``data_report``: what reading and encoding did (:class:`DataReport`): ``streams`` (per stream:
  ``name``, ``path``, ``units`` read, ``usable``, ``skipped`` by reason and ``skipped_at`` (the
  first places, ``file:line``, per reason), ``duplicates`` (exact duplicates trained on, without
  ``dedupe``) and ``duplicates_at``, ``byte_order_marks`` (files whose leading UTF-8 BOM was
  stripped), ``held_out`` for validation, ``pass_examples`` (one pass), ``epoch_examples`` and
  ``passes_per_epoch`` (above 1: repeated; below 1: part unseen), ``validation``: its
  held-out examples encoded, truncated (``masked``: of those, kept with no label by
  ``overflow: mask``) and dropped by reason, and ``length_check``: what
  ``max_length`` did to its first training ``examples`` of ``pass_examples``, checked before step 1:
  ``dropped`` by reason, ``truncated``, ``kept``), ``validation`` (those summed) and
  ``training`` (the training examples this rank 0 consumed so far: encoded, truncated, dropped
  by reason). ``fit`` prints it when it starts.
- ``training_settings`` / ``evaluation``: what ``XLlamaModule.training_record()`` returns: ranks,
  accumulation, precision, strategy, epochs, steps, clipping, batch sizes, ``trainable_parameters``
  and ``total_parameters`` (LoRA: the adapters of the whole model); the latest ``val/`` scores.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, TypedDict

SCHEMA_VERSION = 1
RUN_RECORD_FILE = "run.json"
CHECKPOINT_KEY = "run_record"
"""Where a checkpoint holds the run record."""


class StreamPlan(TypedDict):
    name: str
    kind: str
    lang: str
    path: str
    format: Optional[str]
    direction: Optional[str]
    weight: Optional[float]
    count: Optional[int]
    epoch_examples: Optional[int]


class BatchingPlan(TypedDict):
    mode: str
    batch_size: int
    group_batches: int
    pack_length: Optional[int]
    pad_to_multiple_of: int
    num_workers: int
    world_size: int
    batches_per_epoch: Optional[int]


class DataPlan(TypedDict):
    datamodule: str
    streams: list[StreamPlan]
    epoch_examples: Optional[int]
    stop: Optional[str]
    examples_per_epoch: Optional[int]
    seed: int
    max_length: int
    overflow: str
    dedupe: bool
    val_examples_per_stream: int
    val_file: Optional[str]
    paper: bool
    template: str
    translation_instructions: str
    strip_pairs: bool
    use_fast_tokenizer: bool
    batching: BatchingPlan


class EncodingCounts(TypedDict):
    encoded: int
    truncated: int
    masked: int
    dropped: dict[str, int]


class LengthCheck(TypedDict):
    max_length: int
    examples: int
    pass_examples: int
    dropped: dict[str, int]
    truncated: int
    kept: int


class StreamReport(TypedDict):
    name: str
    path: str
    units: int
    usable: int
    skipped: dict[str, int]
    skipped_at: dict[str, list[str]]
    duplicates: int
    duplicates_at: list[str]
    byte_order_marks: list[str]
    held_out: int
    pass_examples: int
    epoch_examples: Optional[int]
    passes_per_epoch: Optional[float]
    validation: EncodingCounts
    length_check: Optional[LengthCheck]


class DataReport(TypedDict):
    streams: list[StreamReport]
    validation: EncodingCounts
    training: EncodingCounts


class PadToken(TypedDict):
    token: Optional[str]
    id: Optional[int]
    reason: str


class Seeds(TypedDict):
    seed_everything: Optional[int]
    data: Optional[int]


class RunRecordDict(TypedDict, total=False):
    schema_version: int
    status: str
    started: Optional[str]
    updated: str
    log_dir: Optional[str]
    ckpt_path: Optional[str]
    global_step: Optional[int]
    epoch: Optional[int]
    model_path: Optional[str]
    model_folder: Optional[str]
    seeds: Optional[Seeds]
    template: Optional[str]
    language_modules: list[str]
    pad_token: Optional[PadToken]
    data_plan: Optional[DataPlan]
    data_report: Optional[DataReport]
    training_settings: dict[str, Any]
    evaluation: dict[str, float]
    skipped_steps: int
    error: Optional[str]
    last_saved_step: Optional[int]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_record(record: RunRecordDict, folder: str | Path) -> Path:
    """Write ``record`` as ``folder/run.json`` (atomically: a reader never sees half a file)."""
    path = Path(folder) / RUN_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=_plain) + "\n")
    partial.replace(path)
    return path


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; anything else that JSON lacks is a bug in a writer."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError(f"run record values must be plain JSON, got {type(value).__name__}: {value!r}")


def read_run_record(path: str | Path) -> RunRecordDict:
    """A ``run.json`` (or the folder holding one); a record of a newer schema is refused."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_RECORD_FILE
    record = json.loads(path.read_text())
    version = record.get("schema_version") if isinstance(record, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{path} is not a run record (no schema_version)")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has run record schema {version}; this version reads up to {SCHEMA_VERSION}"
        )
    return record


def model_folder(model_path: Optional[str]) -> Optional[str]:
    """``model_path`` as an absolute folder when it is a local folder, else None (a hub name)."""
    if not model_path or not Path(model_path).expanduser().is_dir():
        return None
    return str(Path(model_path).expanduser().resolve())


def build_run_record(
    trainer, pl_module, log_dir: Optional[str], started: Optional[str], status: str
) -> RunRecordDict:
    """The record of a fit in progress (every rank can build it; no collectives)."""
    from lightning_xllama.runtime.hf_loading import pad_token_choice
    from lightning_xllama.runtime.seeds import run_seed

    datamodule = trainer.datamodule
    hparams = getattr(pl_module, "hparams", {})
    data_hparams = getattr(datamodule, "hparams", None)
    record: RunRecordDict = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "started": started,
        "updated": now(),
        "log_dir": log_dir,
        "ckpt_path": str(trainer.ckpt_path) if trainer.ckpt_path else None,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "model_path": hparams.get("model_name_or_path"),
        "model_folder": model_folder(hparams.get("model_name_or_path")),
        "seeds": {
            "seed_everything": run_seed(),
            "data": getattr(data_hparams, "seed", None) if data_hparams is not None else None,
        },
        "template": getattr(data_hparams, "template", None),
        "language_modules": list(
            getattr(getattr(datamodule, "hparams", None), "language_modules", None) or []
        ),
        "pad_token": None,
        "data_plan": None,
        "data_report": None,
    }
    # the tokenizer the batches are padded with: the DataModule's, else the model's
    if getattr(getattr(datamodule, "hparams", None), "tokenizer", None) is not None:
        tokenizer = datamodule.tokenizer
    else:
        tokenizer = getattr(pl_module, "tokenizer", None)
    if tokenizer is not None:
        record["pad_token"] = pad_token_choice(tokenizer)
    if hasattr(datamodule, "data_plan"):
        record["data_plan"] = datamodule.data_plan()
        record["data_report"] = datamodule.data_report()
    if hasattr(pl_module, "training_record"):
        record.update(pl_module.training_record())
    return record


def checkpoint_run_record(checkpoint: dict, data_plan: Optional[DataPlan]) -> RunRecordDict:
    """The run record of a checkpoint: the one the run saved in it, with the checkpoint's own
    step, epoch, settings and scores; for a checkpoint without one, as much as it holds."""
    saved = checkpoint.get(CHECKPOINT_KEY)
    hparams = checkpoint.get("hyper_parameters") or {}
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    record: RunRecordDict = (
        dict(saved)
        if isinstance(saved, dict)
        else {
            "schema_version": SCHEMA_VERSION,
            "status": "exported",
            "started": None,
            "log_dir": None,
            "ckpt_path": None,
            "model_path": hparams.get("model_name_or_path"),
            "template": data.get("template"),
            "language_modules": list(data.get("language_modules") or []),
            "pad_token": None,
            "data_plan": data_plan,
            "data_report": None,
        }
    )
    record.update(
        updated=now(),
        global_step=checkpoint.get("global_step"),
        epoch=checkpoint.get("epoch"),
        training_settings=checkpoint.get("training_settings")
        or record.get("training_settings")
        or {},
        evaluation=checkpoint.get("evaluation") or record.get("evaluation") or {},
    )
    if data_plan is not None:
        record["data_plan"] = data_plan
    return record
