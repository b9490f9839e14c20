"""``python -m lightning_xllama import-gguf --file MODEL.gguf --out FOLDER``: a GGUF model as a
Hugging Face folder that every command takes as ``model_name_or_path`` or ``--model``.

transformers reads the GGUF (``from_pretrained(folder, gguf_file=...)``, de-quantised to float);
what it makes of the tokenizer needs repairs before training or generation can rely on it, and
each repair is printed and written to ``gguf_import.json`` in the folder:

- EOS: transformers 4.x gives a LLaMA-type GGUF tokenizer the BOS token as its EOS too, while the
  GGUF's own metadata, the model's generation config and the chat template end a turn with another
  token (SmolLM2: ``<|im_start|>`` for both, where ``<|im_end|>`` ends a turn). Responses would be
  trained to end with the BOS token, and generation would not stop. The EOS is taken from the
  generation config (else the model config, else the chat template's end of turn).
- BOS: the GGUF says whether its tokenizer adds a BOS (``tokenizer.ggml.add_bos_token``); the
  converted tokenizer adds one regardless. The GGUF's choice is kept.
- pad: none is set; the package's rule chooses one
  (:func:`~lightning_xllama.runtime.hf_loading.choose_pad_token`).
- ``tokenizer.model``: the converted tokenizer's vocabulary file is the GGUF itself, so a plain
  ``save_pretrained`` copies the whole model there; only ``tokenizer.json`` is written.

The folder is written like an export (:mod:`lightning_xllama.export.target`: a manifest, a
temporary sibling folder moved into place, ``--overwrite true`` replaces only an earlier one).
Needs the ``gguf`` extra: ``pip install 'lightning_xllama[gguf]'``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional

import torch

from lightning_xllama.export.target import check_export_target, write_export
from lightning_xllama.prompts import chat_end_of_turn
from lightning_xllama.runtime.hf_loading import choose_pad_token

IMPORT_NOTE = "gguf_import.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's scalar metadata (architecture, tokenizer ids and flags), without tensors or
    the token lists."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    values = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key.rsplit(".", 1)[1] in (
            "tokens",
            "scores",
            "token_type",
            "merges",
        ):
            continue
        try:
            values[key] = field.contents()
        except (ValueError, TypeError, IndexError):  # a type this reader version cannot show
            continue
    return values


def _first(ids) -> Optional[int]:
    if isinstance(ids, (list, tuple)):
        return ids[0] if ids else None
    return ids


def expected_eos(model, tokenizer) -> tuple[Optional[int], str]:
    """The id that ends a response, and where it was read: the generation config's EOS, else the
    model config's, else the chat template's end of turn."""
    generation = _first(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    if generation is not None:
        return generation, "the model's generation config"
    configured = _first(getattr(model.config, "eos_token_id", None))
    if configured is not None:
        return configured, "the model's config"
    turn_end = chat_end_of_turn(tokenizer)
    if turn_end:
        return turn_end[0], "the chat template's end of turn"
    return None, "nothing"


def repair_tokenizer(tokenizer, model, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """Repair the tokenizer transformers converted from a GGUF (see the module docstring), in
    place; one record per repair (``what``, ``was``, ``now``, ``why``)."""
    repairs: list[dict[str, Any]] = []
    eos_id, source = expected_eos(model, tokenizer)
    if eos_id is not None and tokenizer.eos_token_id != eos_id:
        was = tokenizer.eos_token
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
        gguf_eos = metadata.get("tokenizer.ggml.eos_token_id")
        repairs.append(
            {
                "what": "eos_token",
                "was": was,
                "now": tokenizer.eos_token,
                "why": f"the EOS (id {eos_id}) of {source}; the GGUF's tokenizer.ggml.eos_token_id "
                f"is {gguf_eos}, the converted tokenizer had id {tokenizer.convert_tokens_to_ids(was)}",
            }
        )
    add_bos = metadata.get("tokenizer.ggml.add_bos_token")
    if isinstance(add_bos, bool) and getattr(tokenizer, "add_bos_token", add_bos) != add_bos:
        was = tokenizer.add_bos_token
        tokenizer.add_bos_token = add_bos
        repairs.append(
            {
                "what": "add_bos_token",
                "was": was,
                "now": add_bos,
                "why": "the GGUF's tokenizer.ggml.add_bos_token",
            }
        )
    pad, reason = choose_pad_token(tokenizer)
    if pad is not None:
        tokenizer.pad_token = pad
        gguf_pad = metadata.get("tokenizer.ggml.padding_token_id")
        repairs.append(
            {
                "what": "pad_token",
                "was": None,
                "now": pad,
                "why": f"{reason}; the GGUF's tokenizer.ggml.padding_token_id is {gguf_pad}",
            }
        )
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file is not None and Path(vocab_file).suffix == ".gguf":
        tokenizer.vocab_file = None  # save_pretrained would copy the whole GGUF as tokenizer.model
        repairs.append(
            {
                "what": "tokenizer.model",
                "was": vocab_file,
                "now": None,
                "why": "the converted tokenizer's vocabulary file is the GGUF itself; only "
                "tokenizer.json is written",
            }
        )
    return repairs


def tokenizer_notes(tokenizer) -> list[str]:
    """What the repaired tokenizer still does that a user may not expect."""
    notes = []
    turn_end = chat_end_of_turn(tokenizer)
    if turn_end and tokenizer.eos_token_id not in turn_end:
        notes.append(
            f"the chat template ends a turn with {tokenizer.convert_ids_to_tokens(turn_end)}, "
            f"not the EOS {tokenizer.eos_token!r}: generation stops at both"
        )
    return notes


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def import_gguf(
    file: str,
    out: str,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    overwrite: bool = False,
) -> dict:
    """Write a GGUF model (LLaMA architecture and others transformers reads) as a Hugging Face
    folder with a repaired tokenizer; print and return what was repaired.

    Args:
        file: the ``.gguf`` file (quantised weights are de-quantised).
        out: the folder to write: config, safetensors weights, generation config, tokenizer and
            ``gguf_import.json`` (the source, the repairs, the time taken).
        dtype: the weights' dtype in the folder (``float32`` as read; ``bfloat16`` halves it).
        overwrite: replace an earlier import or export in ``out`` (only the files it wrote).
    """
    started = time.perf_counter()
    path = Path(file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"import-gguf file: {file!r} is not a file")
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"import-gguf file: {file!r} is not a .gguf file")
    protected = [(path, "the GGUF file being imported")]
    check_export_target(out, overwrite, protected)  # before any loading
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError as err:
        raise ImportError(
            "import-gguf needs the gguf package: pip install 'lightning_xllama[gguf]'"
        ) from err
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=DTYPES[dtype])
    metadata = gguf_metadata(path)
    repairs = repair_tokenizer(tokenizer, model, metadata)
    note = {
        "source": str(path.resolve()),
        "source_bytes": path.stat().st_size,
        "architecture": metadata.get("general.architecture"),
        "name": metadata.get("general.name"),
        "model_class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": dtype,
        "tokenizer": {
            role: {
                "token": getattr(tokenizer, f"{role}_token"),
                "id": getattr(tokenizer, f"{role}_token_id"),
            }
            for role in ("bos", "eos", "pad", "unk")
        },
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "repairs": repairs,
        "notes": tokenizer_notes(tokenizer),
    }

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        note["seconds"] = round(time.perf_counter() - started, 1)
        (staging / IMPORT_NOTE).write_text(json.dumps(note, indent=1, ensure_ascii=False) + "\n")

    target = write_export(out, write, overwrite, protected)
    note["folder_bytes"] = _folder_bytes(target)
    print(
        f"imported {path.name} ({note['model_class']}, {note['parameters']:,} parameters, "
        f"{dtype}) into {target} ({note['folder_bytes'] / 2**20:.1f} MiB) in {note['seconds']} s"
    )
    for repair in repairs:
        print(
            f"  repaired {repair['what']}: {repair['was']!r} -> {repair['now']!r} ({repair['why']})"
        )
    if not repairs:
        print("  the tokenizer needed no repair")
    for line in note["notes"]:
        print(f"  note: {line}")
    return note
