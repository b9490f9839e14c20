"""The model card (README.md) of an exported folder: base model, data mixture, training settings
and the last evaluation scores, read from the checkpoint and its run record."""

from __future__ import annotations

from pathlib import Path

from lightning_xllama.data.datamodule import saved_data_plan


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


def _mixture_from_settings(data: dict) -> tuple[list[tuple], set[str]]:
    """The streams of a checkpoint saved before the data plan was (re-read from the DataModule's
    settings, without epoch counts)."""
    if data.get("streams"):
        streams = [
            {
                "name": s.get("name") or f"{s['kind']}:{s['lang']}",
                "kind": s["kind"],
                "lang": s["lang"],
                "direction": s.get("direction") if s["kind"] == "parallel" else None,
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


def model_card(checkpoint: dict, adapter: bool = False) -> str:
    """A README for the exported folder from what the checkpoint recorded; ``adapter``: the folder
    holds LoRA adapters for the base model, not a whole model."""
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
    front = [
        "---",
        f"base_model: {base}",
        "library_name: transformers",
        "tags: [lightning_xllama, instruction-tuning]",
    ]
    if languages:
        front.append("language: [" + ", ".join(sorted(languages)) + "]")
    front.append("---")
    training = [
        ("optimizer steps", checkpoint.get("global_step", "")),
        ("epoch (counted from 0)", checkpoint.get("epoch", "")),
        ("learning rate (AdamW, peak)", hparams.get("learning_rate", "")),
        (
            "schedule",
            f"linear warm-up over {hparams.get('warmup_ratio', '')} of the steps, "
            f"cosine decay to {hparams.get('min_lr_ratio', 0)} of the peak",
        ),
        ("weight decay", hparams.get("weight_decay", "")),
        ("max length (tokens)", data.get("max_length", "")),
        ("template", data.get("template", "")),
        ("batching", data.get("batching", "")),
        ("seed", data.get("seed", "")),
    ]
    training += [(key.replace("_", " "), value) for key, value in settings.items()]
    sections = [
        "\n".join(front),
        f"# Instruction-tuned {Path(str(base)).name or base}",
        f"{kind} of `{base}` with lightning_xllama: "
        + (
            "full-parameter tuning"
            if rank is None
            else f"LoRA (rank {rank}, alpha {hparams.get('lora_alpha')}, "
            f"modules {hparams.get('lora_target_modules') or 'all linear in the decoder layers'}; "
            + ("this folder holds the adapters" if adapter else "merged into the weights")
            + ")"
        )
        + " on "
        "English instructions, the same instructions in the target language(s) and translation "
        "pairs turned into instructions; the loss is on the response tokens only.",
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
    return "\n\n".join(sections) + "\n"


# --- the command --------------------------------------------------------------------------------
