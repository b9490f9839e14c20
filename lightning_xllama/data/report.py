"""The data report as text: what ``fit`` prints when it starts (the same figures as ``run.json``'s
``data_report``), so nothing skipped, repeated or left unseen goes unnoticed."""

from __future__ import annotations

from typing import Optional


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
    lines.append(
        f"validation: {validation['encoded']} held-out examples, {validation['truncated']} "
        f"truncated, dropped: {dropped}. Training examples are encoded as they are read: their "
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
