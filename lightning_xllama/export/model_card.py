"""The model card (README.md) of an exported folder: base model, data mixture, training settings
and the last evaluation scores, read from the checkpoint and its run record."""

from __future__ import annotations

from typing import Optional

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lightning_xllama.data.datamodule import saved_data_plan
from lightning_xllama.data.kinds import find_stream_kind
from lightning_xllama.runtime.hf_loading import looks_like_local_path


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mixture(plan: dict) -> tuple[list[tuple], set[str]]:
    """Rows (stream, kind, language, direction, source, share, examples per epoch) and languages
    of the data plan the DataModule saved."""
    rows = [
        (
            s["name"],
            s["kind"],
            s["lang"],
            s.get("direction") or "",
            f"`{s['path']}`",
            s["count"]
            if s.get("count") is not None
            else (s["weight"] if s.get("weight") is not None else 1.0),
            s.get("epoch_examples") if s.get("epoch_examples") is not None else "",
        )
        for s in plan.get("streams") or []
    ]
    return rows, {row[2] for row in rows}


def _directed(kind: str) -> bool:
    """Whether streams of ``kind`` have a direction (a kind not registered here: no)."""
    registered = find_stream_kind(kind)
    return registered is not None and registered.directed


def _mixture_from_settings(data: dict) -> tuple[list[tuple], set[str]]:
    """The streams of a checkpoint saved before the data plan was (re-read from the DataModule's
    settings, without epoch counts)."""
    if data.get("streams"):
        streams = [
            {
                "name": s.get("name") or f"{s['kind']}:{s['lang']}",
                "kind": s["kind"],
                "lang": s["lang"],
                "direction": s.get("direction") if _directed(s["kind"]) else None,
                "path": s["path"],
                "weight": s.get("weight"),
                "count": s.get("count"),
            }
            for s in data["streams"]
        ]
    elif "language" in data:  # CoITDataModule: English, translated and parallel streams
        weights = data.get("weights") or {"english": 1.0, "translated": 1.0, "parallel": 1.0}
        lang = data["language"]
        streams = [
            {
                "name": "english",
                "kind": "instructions",
                "lang": "en",
                "path": data["english_instructions"],
                "weight": weights.get("english", 0.0),
            },
            {
                "name": "translated",
                "kind": "instructions",
                "lang": lang,
                "path": data["translated_instructions"],
                "weight": weights.get("translated", 0.0),
            },
            {
                "name": "parallel",
                "kind": "parallel",
                "lang": lang,
                "direction": data.get("direction", "en-x"),
                "path": data["parallel"],
                "weight": weights.get("parallel", 0.0),
            },
        ]
    else:
        return [], set()
    return _mixture({"streams": streams})


OLD_CHECKPOINT_MIXTURE = (
    "This checkpoint holds no data plan (it was written before the DataModule saved one): the "
    "streams are re-read from the data module's settings, without their epoch counts."
)


def base_model_name(base: str, config=None, parameters: Optional[int] = None) -> str:
    """What the card calls the base model: its hub name, else the name its config carries
    (``_name_or_path`` when that is not a folder), else its architecture and size; a local folder's
    own name (often ``base_model`` or ``hf``) says nothing."""
    if base and not looks_like_local_path(base):
        return base
    named = getattr(config, "_name_or_path", None) or ""
    if named and not looks_like_local_path(named):
        return named
    kind = getattr(config, "model_type", None) or "causal LM"
    return f"{kind} ({parameters:,} parameters)" if parameters else kind


def _pair(direction: Optional[str], lang: str) -> str:
    """A stream's translation direction with its language: ``en-x`` -> ``en-zh``."""
    named = {"en-x": f"en-{lang}", "x-en": f"{lang}-en", "both": f"en-{lang}, {lang}-en"}
    return named.get(direction or "en-x", direction)


def streams_sentence(rows: list[tuple]) -> str:
    """The data the run trained on, in words, from the mixture rows (streams with a zero weight
    or count left out): English instructions, instructions in other languages, translation pairs
    and any other kind of stream, each only when used."""
    used = [row for row in rows if row[5] not in (0, 0.0)]
    english = any(row[1] == "instructions" and row[2] == "en" for row in used)
    translated = sorted({row[2] for row in used if row[1] == "instructions" and row[2] != "en"})
    pairs = sorted({_pair(row[3], row[2]) for row in used if row[1] == "parallel"})
    others = sorted(
        {f"{row[1]} ({row[2]})" for row in used if row[1] not in ("instructions", "parallel")}
    )
    parts = []
    if english:
        parts.append("English instructions")
    if translated:
        parts.append("instructions in " + ", ".join(translated))
    if pairs:
        parts.append("translation pairs (" + ", ".join(pairs) + ") turned into instructions")
    parts += others
    if not parts:
        return "data not recorded in the checkpoint"
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _eval_results(scores: dict[str, float]) -> list[EvalResult]:
    """The final scores as the Hub's ``model-index``: one result per ``val/{evaluation}/{set}/
    {metric}`` and the held-out loss (per-layer probe curves left out)."""
    results = []
    for key, value in sorted(scores.items()):
        parts = key.split("/")
        if key == "val/loss":  # the held-out examples of the training streams
            parts = ["val", "held-out", "examples", "loss"]
        if len(parts) < 4 or "/layer" in key:
            continue
        evaluation, set_name, metric = parts[1], parts[2], "/".join(parts[3:])
        task = "translation" if evaluation == "translation" else "text-generation"
        results.append(
            EvalResult(
                task_type=task,
                dataset_type=f"lightning_xllama/{evaluation}",
                dataset_name=f"{evaluation} {set_name}",
                dataset_config=set_name,
                metric_type=metric,
                metric_name=metric,
                metric_value=round(float(value), 4),
            )
        )
    return results


def model_card(checkpoint: dict, adapter: bool = False, config=None) -> str:
    """A README for the exported folder from what the checkpoint recorded; ``adapter``: the folder
    holds LoRA adapters for the base model, not a whole model; ``config``: the base model's
    Hugging Face config (its name for the title). The YAML header is ``huggingface_hub``'s
    :class:`ModelCardData`, with the final scores as its ``model-index``."""
    base = checkpoint.get("base_model", "")
    hparams = checkpoint.get("hyper_parameters") or {}
    rank = hparams.get("lora_rank")
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    plan = saved_data_plan(checkpoint)
    settings = checkpoint.get("training_settings") or {}
    scores = checkpoint.get("evaluation") or {}
    rows, languages = _mixture(plan) if plan is not None else _mixture_from_settings(data)
    multilingual = len(languages - {"en"}) > 1
    kind = (
        "m-LLaMA (multilingual instruction tuning)"
        if multilingual
        else "x-LLaMA (cross-lingual instruction tuning)"
    )
    name = base_model_name(str(base), config, settings.get("total_parameters"))
    title = f"Instruction-tuned {name}"
    card_data = ModelCardData(
        base_model=base or None,
        library_name="transformers",
        tags=["lightning_xllama", "instruction-tuning"],
        language=sorted(languages) or None,
        model_name=title,
        eval_results=_eval_results(scores) or None,
    )
    optimizer = hparams.get("optimizer")
    if optimizer is None:
        optimizer_rows = [("learning rate (AdamW, peak)", hparams.get("learning_rate", ""))]
        optimizer_rows.append(("weight decay", hparams.get("weight_decay", "")))
    else:
        init_args = optimizer.get("init_args") or {}
        optimizer_rows = [
            ("optimizer", optimizer["class_path"]),
            ("learning rate (peak)", init_args.get("lr", "")),
            ("weight decay", init_args.get("weight_decay", "")),
        ]
    scheduler = hparams.get("lr_scheduler")
    training = [
        ("optimizer steps", checkpoint.get("global_step", "")),
        ("epoch (counted from 0)", checkpoint.get("epoch", "")),
        *optimizer_rows[:1],
        (
            "schedule",
            scheduler["class_path"]
            if scheduler is not None
            else f"linear warm-up over {hparams.get('warmup_ratio', '')} of the steps, "
            f"cosine decay to {hparams.get('min_lr_ratio', 0)} of the peak",
        ),
        *optimizer_rows[1:],
        ("max length (tokens)", data.get("max_length", "")),
        ("template", data.get("template", "")),
        ("batching", data.get("batching", "")),
        ("seed", data.get("seed", "")),
    ]
    training += [(key.replace("_", " "), value) for key, value in settings.items()]
    sections = [
        f"# {title}",
        f"{kind} of `{base}` with lightning_xllama: "
        + (
            "full-parameter tuning"
            if rank is None
            else f"LoRA (rank {rank}, alpha {hparams.get('lora_alpha')}, "
            f"modules {hparams.get('lora_target_modules') or 'all linear in the decoder layers'}; "
            + ("this folder holds the adapters" if adapter else "merged into the weights")
            + ")"
        )
        + f" on {streams_sentence(rows)}; the loss is on the response tokens only.",
        "## Data mixture",
        (
            _table(
                (
                    "stream",
                    "kind",
                    "language",
                    "direction",
                    "source",
                    "weight or count",
                    "examples per epoch",
                ),
                rows,
            )
            + ("" if plan is not None else "\n\n" + OLD_CHECKPOINT_MIXTURE)
        )
        if rows
        else "Not recorded in the checkpoint.",
        "## Training",
        _table(("setting", "value"), training),
        "## Last evaluation scores",
        _table(("metric", "value"), [(k, f"{v:.4g}") for k, v in sorted(scores.items())])
        if scores
        else "No validation scores were recorded before this checkpoint.",
        "## Use",
        (
            "```python\nfrom peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
            'model = PeftModel.from_pretrained(base, "PATH")\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH")\n```\n'
            if adapter
            else "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("PATH")\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH")\n```\n'
        )
        + f"Prompts follow the `{data.get('template', 'alpaca')}` template the model was tuned with.",
    ]
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    return str(card)


# --- the command --------------------------------------------------------------------------------
