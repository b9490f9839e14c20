"""``data stats``: what a training config's data amounts to, before training on it.

Reads the config's data module the way ``fit`` does, runs the real pipeline over epoch 0 (or its
first batches) on one process, and reports: examples and tokens per stream, the realised mixture
against the requested one, what was skipped, deduplicated, truncated or dropped and why, the
padding efficiency of each batching mode, sentences shared by the training pairs and the
configured evaluation sets, and a few rendered prompts with their loss masks.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

from lightning_xllama.commands.fit import link_arguments
from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.data.kinds import import_config_modules
from lightning_xllama.data.packing import pack_rows
from lightning_xllama.data.sources import read_parallel


def load_datamodule(data: dict, model: Optional[dict] = None):
    """The data module of a ``fit`` config's ``data`` section, validated, linked to the model
    section by the CLI's own links (:func:`~lightning_xllama.commands.fit.link_arguments`: the
    tokenizer is the model's) and instantiated by the same parser machinery. Nothing of the model
    is built."""
    import lightning as L
    from lightning.pytorch.cli import LightningArgumentParser

    from lightning_xllama.training.module import XLlamaModule

    import_config_modules(data)  # the streams' kinds and languages, before a stream is built
    parser = LightningArgumentParser()
    parser.add_subclass_arguments(XLlamaModule, "model", required=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    link_arguments(parser)
    config = parser.parse_object({"data": data, "model": model or {"init_args": {}}})
    config.model = None  # parsed for its links only
    return parser.instantiate_classes(config).data


def evaluation_sets(trainer: Optional[dict]) -> dict[str, list[tuple[str, str]]]:
    """Aligned test sets of the config's callbacks (those with ``test_prefix`` and ``directions``)."""
    sets = {}
    for callback in (trainer or {}).get("callbacks") or []:
        args = (callback.get("init_args") or {}) if isinstance(callback, dict) else {}
        if "test_prefix" in args and "directions" in args:
            for direction in args["directions"]:
                src, _, tgt = direction.partition("-")
                sets[f"{args['test_prefix']} ({direction})"] = read_parallel(
                    args["test_prefix"], src, tgt
                )
    return sets


def padding_efficiency(
    lengths: list[list[int]], group_batches: int, pack_length: Optional[int]
) -> dict[str, float]:
    """Share of non-padding tokens in the batch tensors of each batching mode, for the same
    batches of examples (``lengths``: example lengths per batch)."""
    real = sum(sum(batch) for batch in lengths)
    padded = sum(len(batch) * max(batch) for batch in lengths)
    flat = [n for batch in lengths for n in batch]
    size = max(len(batch) for batch in lengths)
    grouped = 0
    for start in range(0, len(flat), size * group_batches):
        buffer = sorted(flat[start : start + size * group_batches])
        grouped += sum(
            len(b) * max(b) for b in (buffer[i : i + size] for i in range(0, len(buffer), size))
        )
    packed = 0
    for batch in lengths:
        rows = pack_rows(batch, pack_length)
        packed += len(rows) * max(sum(batch[i] for i in row) for row in rows)
    return {"pad": real / padded, "group_by_length": real / grouped, "pack": real / packed}


def render_masked(tokenizer, example: dict) -> str:
    """An encoded example as text, the trained part between ⟦ and ⟧, with its token counts."""
    ids, labels = example["input_ids"], example["labels"]
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt = tokenizer.decode(ids[:first])
    response = tokenizer.decode(ids[first:])
    mask = "".join("." if label == IGNORE_INDEX else "#" for label in labels)
    return (
        f"{prompt}⟦{response}⟧\n"
        f"  loss mask ({first} prompt tokens '.', {len(ids) - first} response tokens '#'): {mask}"
    )


def collect(datamodule, limit_batches: Optional[int] = None) -> dict:
    """Run epoch 0 on one process and count everything per stream."""
    dataset = datamodule.train_dataset(0, 1)
    per_stream: dict[int, Counter] = defaultdict(Counter)
    dropped: dict[int, Counter] = defaultdict(Counter)
    lengths, shown = [], {}
    for number, batch in enumerate(dataset.encoded_batches(epoch=0, start=0)):
        if limit_batches is not None and number >= limit_batches:
            break
        kept = []
        for e in batch:
            counts = per_stream[e["stream"]]
            if "dropped" in e:
                dropped[e["stream"]][e["dropped"]] += 1
                continue
            prompt = sum(label == IGNORE_INDEX for label in e["labels"])
            counts.update(
                examples=1,
                truncated=int(e["truncated"]),
                prompt_tokens=prompt,
                response_tokens=len(e["labels"]) - prompt,
            )
            kept.append(e)
            shown.setdefault(e["stream"], e)
        if kept:
            lengths.append([len(e["input_ids"]) for e in kept])
    return {
        "per_stream": per_stream,
        "dropped": dropped,
        "lengths": lengths,
        "examples": list(shown.values()),
        "batches": len(lengths),
    }


def overlap(datamodule, sets: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    """Evaluation sentences that also appear (exactly, after stripping) in the training pairs
    (every usable pair, the ones held out for the validation loss included). Only the small
    evaluation sets are held in memory; the training corpora stream past them."""
    wanted = {s.strip() for pairs in sets.values() for pair in pairs for s in pair}
    seen: set[str] = set()
    for reader in datamodule.readers:
        fields = reader.stream.stream_kind.overlap_fields
        if fields:
            for _, record in reader.records(reader.index.usable):
                seen.update(s for s in (record[i].strip() for i in fields) if s in wanted)
    found = {}
    for name, pairs in sets.items():
        shared = [s for pair in pairs for s in pair if s.strip() in seen]
        found[name] = {
            "sentences": 2 * len(pairs),
            "in_training": len(shared),
            "examples": shared[:3],
        }
    return found


def stats_command(
    data: dict,
    model: Optional[dict] = None,
    trainer: Optional[dict] = None,
    limit_batches: Optional[int] = None,
    show: int = 2,
    out: Optional[str] = None,
) -> dict:
    """Report examples, tokens, mixture, filtering, padding and overlap of a training config's data.

    Run it on a ``fit`` config: ``data stats --config run.yaml``. The command line reads the
    config as the ``fit`` command does (:func:`stats_parser`: its sections, links and checks); ``data`` is built as ``fit`` builds it, ``model`` gives the tokenizer,
    ``trainer.callbacks`` the evaluation sets, and nothing else is built.

    Args:
        data: the data module (``class_path`` and ``init_args``).
        model: the model section; its ``model_name_or_path`` is the tokenizer.
        trainer: the trainer section; callbacks with ``test_prefix`` and ``directions`` are the
            evaluation sets checked for overlap.
        limit_batches: tokenise only the first N batches of epoch 0 (default: the whole epoch).
        show: examples shown rendered with their loss masks (at most one per stream).
        out: also write the numbers to this JSON file.
    """
    datamodule = load_datamodule(data, model)
    datamodule.prepare_data()
    datamodule.setup("fit")
    h = datamodule.hparams
    run = collect(datamodule, limit_batches)
    total_planned = sum(datamodule.counts)
    total_seen = sum(c["examples"] for c in run["per_stream"].values()) or 1
    weights = [s.weight if s.weight is not None else 1.0 for s in datamodule.streams]
    counted = any(s.count is not None for s in datamodule.streams)
    report: dict = {"stop": None if counted else datamodule.stop_rule, "streams": []}
    lines = [
        f"{type(datamodule).__name__}: {len(datamodule.streams)} streams, epoch of {total_planned} examples "
        + ("(counts)" if counted else f"(stop rule {datamodule.stop_rule})")
    ]
    lines.append(
        f"{'stream':32} {'units':>8} {'skipped':>8} {'held out':>8} {'pass':>8} {'epoch':>8} "
        f"{'requested':>9} {'planned':>8} {'realised':>8} {'repeats':>8} {'examples':>8} {'tokens':>9}"
    )
    for i, (stream, reader, planned) in enumerate(
        zip(datamodule.streams, datamodule.readers, datamodule.counts)
    ):
        index, seen = reader.index, run["per_stream"][i]
        requested = (
            (f"{stream.count} rec" if stream.count is not None else "all")
            if counted
            else f"{weights[i] / sum(weights):.3f}"
        )
        held_out = index.usable_units - reader.size // stream.multiplicity
        entry = {
            "stream": stream.label,
            "path": stream.path,
            "units": index.units,
            "skipped": dict(index.skipped),
            "skipped_at": index.skipped_at,
            "held_out": held_out,
            "pass_examples": reader.size,
            "epoch_examples": planned,
            "requested": requested,
            "planned_share": planned / total_planned,
            "realised_share": seen["examples"] / total_seen,
            "repeated": max(0, planned - reader.size),
            "unused": max(0, reader.size - planned),
            "examples": seen["examples"],
            "truncated": seen["truncated"],
            "dropped": dict(run["dropped"][i]),
            "prompt_tokens": seen["prompt_tokens"],
            "response_tokens": seen["response_tokens"],
        }
        report["streams"].append(entry)
        lines.append(
            f"{stream.label:32} {index.units:>8} {sum(index.skipped.values()):>8} {held_out:>8} {reader.size:>8} "
            f"{planned:>8} {requested:>9} {entry['planned_share']:>8.3f} {entry['realised_share']:>8.3f} "
            f"{entry['repeated']:>8} {seen['examples']:>8} {seen['prompt_tokens'] + seen['response_tokens']:>9}"
        )
    lines.append("skipped, deduplicated, truncated and dropped (with reasons):")
    for entry in report["streams"]:
        for reason, n in entry["skipped"].items():
            lines.append(
                f"  {entry['stream']}: {n} skipped: {reason} (e.g. {'; '.join(entry['skipped_at'][reason])})"
            )
        if entry["truncated"]:
            lines.append(
                f"  {entry['stream']}: {entry['truncated']} truncated to max_length {h.max_length}"
            )
        for reason, n in entry["dropped"].items():
            lines.append(f"  {entry['stream']}: {n} dropped: {reason}")
        if entry["unused"]:
            lines.append(
                f"  {entry['stream']}: {entry['unused']} examples not used this epoch (stop rule or count)"
            )
    padding = datamodule.train_dataset(0, 1).padding_examples
    if padding:
        lines.append(
            f"  {padding} examples repeated so that every worker holds as many (num_workers {h.num_workers})"
        )
    report["repeated_to_even_out_workers"] = padding
    if run["lengths"]:
        batching = datamodule.batching
        efficiency = padding_efficiency(
            run["lengths"], batching.group_batches, batching.pack_length
        )
        report["padding_efficiency"] = efficiency
        lines.append(
            f"non-padding share of batch tokens over {run['batches']} batches of {h.batch_size} "
            f"(configured: {batching.mode}): "
            + ", ".join(f"{mode} {share:.1%}" for mode, share in efficiency.items())
        )
        if batching.mode == "pack":
            first = run["lengths"][0]
            rows = [
                " ".join(f"[{first[i]}]" for i in row)
                for row in pack_rows(first, batching.pack_length)
            ]
            lines.append(
                "first packed batch, example lengths per row (each attends only within its []): "
                + " | ".join(rows)
            )
    sets = evaluation_sets(trainer)
    report["overlap"] = overlap(datamodule, sets)
    lines.append(
        "overlap of training pairs with evaluation sets:"
        + ("" if sets else " no evaluation sets configured")
    )
    for name, found in report["overlap"].items():
        lines.append(
            f"  {name}: {found['in_training']} of {found['sentences']} sentences appear in training pairs"
            + (f" (e.g. {found['examples']})" if found["examples"] else "")
        )
    lines.append(
        f"rendered examples (prompt, then the trained part between ⟦ ⟧; template {h.template}):"
    )
    for example in run["examples"][:show]:
        lines.append(f"--- {datamodule.streams[example['stream']].label}")
        lines.append(render_masked(datamodule.tokenizer, example))
    print("\n".join(lines))
    if out:
        Path(out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def stats_parser():
    """The parser of ``data stats``: a ``fit`` config's sections (``seed_everything``, ``trainer``,
    ``model``, ``data``, ``optimizer``, ``lr_scheduler``, ``ckpt_path``), with the ``fit``
    command's links (:func:`~lightning_xllama.commands.fit.link_arguments`) and checks, plus this
    command's flags, so any config ``fit`` takes is read here with the same keys."""
    from lightning_xllama.commands.fit import fit_config_parser

    parser = fit_config_parser(prog="lightning_xllama data stats")
    parser.add_argument(
        "--limit_batches",
        type=Optional[int],
        default=None,
        help="tokenise only the first N batches of epoch 0 (default: the whole epoch)",
    )
    parser.add_argument(
        "--show",
        type=int,
        default=2,
        help="examples shown rendered with their loss masks (at most one per stream)",
    )
    parser.add_argument(
        "--out", type=Optional[str], default=None, help="also write the numbers to this JSON file"
    )
    return parser


def stats_main(args: list[str]) -> dict:
    """``data stats ARGS`` (``--config run.yaml`` and the ``fit`` flags, plus ``--limit_batches``,
    ``--show`` and ``--out``); the report. Seeds and checks the model path as ``fit`` does; only
    the data module is built and nothing trains."""
    from lightning.fabric.utilities.seed import seed_everything

    from lightning_xllama.runtime.hf_loading import check_model_path

    config = stats_parser().parse_args(args).as_dict()
    if config["seed_everything"] is not False:
        seed = config["seed_everything"]
        seed_everything(None if seed is True else seed, workers=True)
    check_model_path(config["model"]["init_args"]["model_name_or_path"])
    return stats_command(
        config["data"],
        config["model"],
        config.get("trainer"),
        config["limit_batches"],
        config["show"],
        config["out"],
    )
