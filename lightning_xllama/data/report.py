"""What a data module trains on and what reading did, as ``run.json`` records them and as text.

:func:`plan_record` is ``run.json``'s ``data_plan`` (and every checkpoint's copy of it),
:func:`report_record` its ``data_report``, and :func:`data_report_text` what ``fit`` prints when it
starts (the same figures), so nothing skipped, repeated or left unseen goes unnoticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from lightning_xllama.data.encoding import MASKED, EncodingReport

if TYPE_CHECKING:
    from lightning_xllama.data.plan import DataPlan
    from lightning_xllama.data.streams import StreamReader


def plan_record(
    datamodule: str,
    streams: Sequence,
    counts: Optional[Sequence[int]],
    plan: DataPlan,
    settings: Mapping,
    batching: Mapping,
) -> dict:
    """``run_record.DataPlan`` as plain values: each stream's source and share, the epoch's
    counts (None before they are planned), the stop rule, then ``settings`` (seed, lengths,
    dedupe, hold-out) and the ``batching`` block, in that order.

    Args:
        datamodule: the data module's import path.
        streams: the configured streams (``Stream``).
        counts: examples of each stream an epoch, or None before ``setup``.
        plan: the shares and stop rule.
        settings: ``seed``, ``max_length``, ``overflow``, ``dedupe``, ``val_examples_per_stream``.
        batching: the batching block (mode, sizes, workers, world size, batches per epoch).
    """
    planned = counts is not None
    counts = list(counts) if planned else [None] * len(streams)
    return {
        "datamodule": datamodule,
        "streams": [
            {
                "name": s.label,
                "kind": s.kind,
                "lang": s.lang,
                "path": s.path,
                "format": s.format,
                "direction": s.direction if s.stream_kind.directed else None,
                "weight": s.weight,
                "count": s.count,
                "epoch_examples": count,
            }
            for s, count in zip(streams, counts)
        ],
        "epoch_examples": sum(counts) if planned else None,
        "stop": None if plan.counted else plan.stop_rule,
        "examples_per_epoch": plan.examples_per_epoch,
        **settings,
        "batching": dict(batching),
    }


def report_record(
    readers: Sequence[StreamReader],
    counts: Optional[Sequence[int]],
    length_checks: Optional[Sequence[Optional[dict]]],
    val_reports: Mapping[str, EncodingReport],
    val_report: EncodingReport,
    train_report: EncodingReport,
) -> dict:
    """``run_record.DataReport``: per stream the units read, skipped (by reason, with the first
    places), exact duplicates kept, byte-order marks stripped, held out, one pass's examples, an
    epoch's examples and how many times the epoch goes through the pass, the validation examples
    truncated or dropped, and the ``length_check`` (None before it ran, or for a stream left out
    of the epoch); then the validation set's and the consumed training examples' counts."""
    streams = []
    counts = counts if counts is not None else [None] * len(readers)
    checks = length_checks or [None] * len(readers)
    for reader, epoch_examples, check in zip(readers, counts, checks):
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
                "validation": encoding_counts(val_reports.get(label, EncodingReport())),
                "length_check": check,
            }
        )
    return {
        "streams": streams,
        "validation": encoding_counts(val_report),
        "training": encoding_counts(train_report),
    }


def encoding_counts(report: EncodingReport) -> dict:
    """An encoding report as plain counts."""
    return {
        "encoded": report.encoded,
        "truncated": report.truncated,
        "masked": report.masked,
        "dropped": dict(report.dropped),
    }


def stream_counts_text(reader: StreamReader, check: Optional[dict] = None) -> str:
    """A stream's figures in a message: units read, skipped by reason, held out, and (after the
    length check) the training examples dropped for length and kept."""
    index = reader.index
    held_out = index.usable_units - reader.size // reader.stream.multiplicity
    text = f"{index.units} units read, skipped: {reasons_text(index.skipped)}, {held_out} held out"
    if check is None:
        return text
    lost = sum(check["dropped"].values())
    return (
        f"{text}, {check['examples']} of {check['pass_examples']} training examples checked: "
        f"{lost} dropped for length ({reasons_text(check['dropped'])}), {check['kept']} kept"
    )


def reasons_text(counts: Mapping[str, int]) -> str:
    """``3 too long, 1 empty``, or ``none``."""
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"


def data_report_text(report: dict, pad_token: Optional[dict] = None) -> str:
    """Lines for a person: a table per stream, then every skip, duplicate, byte-order mark and
    loss to ``max_length`` (the length check ``fit`` makes before step 1) named, then the
    validation set and the padding token. (Streams an epoch repeats more than
    twice or leaves half unseen are warned about when the DataModule plans the epoch.)"""
    header = (
        f"{'stream':24} {'units':>9} {'skipped':>8} {'dupes':>7} {'held out':>8} "
        f"{'one pass':>9} {'epoch':>9} {'passes':>7}"
    )
    lines = ["data report (per stream; run.json's data_report has every figure):", header]
    notes = []
    for s in report["streams"]:
        passes = s.get("passes_per_epoch")
        lines.append(
            f"{s['name']:24} {s['units']:>9} {sum(s['skipped'].values()):>8} "
            f"{s.get('duplicates', 0):>7} {s['held_out']:>8} {s['pass_examples']:>9} "
            f"{s['epoch_examples'] if s.get('epoch_examples') is not None else '-':>9} "
            f"{f'{passes:.2f}' if passes is not None else '-':>7}"
        )
        notes.extend(_stream_notes(s))
    lines.extend(notes)
    validation = report["validation"]
    dropped = ", ".join(f"{n} {reason}" for reason, n in validation["dropped"].items()) or "none"
    masked = validation.get("masked", 0)
    lines.append(
        f"validation: {validation['encoded']} examples, {validation['truncated']} truncated"
        + (f" ({masked} masked: {MASKED})" if masked else "")
        + f", dropped: {dropped}. Training examples are encoded as they are read: their "
        "truncations and drops are counted in run.json (data_report.training) as training goes."
    )
    if pad_token is not None:
        lines.append(
            f"padding with {pad_token['token']!r} (id {pad_token['id']}): {pad_token['reason']}"
        )
    return "\n".join(lines)


def _stream_notes(stream: dict) -> list[str]:
    name, notes = stream["name"], []
    for reason, count in stream["skipped"].items():
        places = "; ".join(stream.get("skipped_at", {}).get(reason, []))
        notes.append(
            f"  {name}: {count} skipped: {reason}" + (f" (e.g. {places})" if places else "")
        )
    if stream.get("duplicates"):
        places = "; ".join(stream.get("duplicates_at", []))
        notes.append(
            f"  {name}: {stream['duplicates']} exact duplicate(s) trained on"
            + (f" (e.g. {places})" if places else "")
            + "; set dedupe: true on the data module to skip them"
        )
    for path in stream.get("byte_order_marks", []):
        notes.append(f"  {name}: UTF-8 byte-order mark stripped from the start of {path}")
    check = stream.get("length_check")
    if check and (check["dropped"] or check["truncated"]):
        lost = sum(check["dropped"].values())
        checked = "" if check["examples"] == check["pass_examples"] else " checked"
        reasons = ", ".join(f"{n} {reason}" for reason, n in check["dropped"].items())
        notes.append(
            f"  {name}: {lost} of {check['examples']} training examples{checked} lost to "
            f"max_length {check['max_length']}"
            + (f" ({reasons})" if reasons else "")
            + f", {check['truncated']} truncated"
        )
    return notes
