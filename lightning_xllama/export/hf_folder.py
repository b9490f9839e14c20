"""Writing a trained model as a Hugging Face folder that ``from_pretrained`` loads.

``python -m lightning_xllama export --ckpt PATH --out DIR`` consolidates a Lightning checkpoint,
a single file (one device, DDP, FSDP ``full``) or a sharded folder (FSDP ``sharded``, FSDP2), into
config, safetensors weights, tokenizer, generation config and a model card README: base model,
data mixture, training settings and the last evaluation scores, plus the run record and the
export's manifest (:mod:`lightning_xllama.export.target` says what may be written and replaced).
It runs in one process with no GPU: a sharded checkpoint is read tensor by tensor into the full
shapes (torch distributed checkpoint reshards on load), and only the model's weights are read,
not the optimizer state.

A LoRA checkpoint holds the adapters only: the base model is loaded from its folder, the adapters
put on it, and the export is either the merged model (``merge_and_unload``: a plain folder that
``AutoModelForCausalLM.from_pretrained`` loads) or the adapter folder (peft's ``save_pretrained``:
``PeftModel.from_pretrained(base, folder)`` loads it), as ``--lora_output`` says.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path
from typing import Literal, Optional, get_args

import torch

from lightning_xllama.data.datamodule import saved_data_plan
from lightning_xllama.export.model_card import model_card
from lightning_xllama.export.target import Protected, check_export_target, write_export
from lightning_xllama.runtime.hf_loading import (
    check_model_path,
    load_tokenizer,
    looks_like_local_path,
)
from lightning_xllama.runtime.run_record import (
    CHECKPOINT_KEY,
    RunRecordDict,
    checkpoint_run_record,
    write_run_record,
)
from lightning_xllama.training.attention import register_attention
from lightning_xllama.training.divergence import nonfinite_weights
from lightning_xllama.training.lora import checkpointed_keys
from lightning_xllama.training.resume_settings import check_remote_code
from lightning_xllama.training.strategies import (
    DTYPES,
    check_checkpoint_shapes,
    empty_model,
    read_checkpoint,
    reset_rotary_buffers,
)

MODEL_PREFIX = "model."  # XLlamaModule keeps the Hugging Face model in ``self.model``
LoraOutput = Literal["merged", "adapter"]


def save_hf_folder(
    model,
    tokenizer,
    out_dir: str | Path,
    overwrite: bool = False,
    state_dict: Optional[dict] = None,
    card: Optional[str] = None,
    run_record: Optional[RunRecordDict] = None,
    protected: Protected = (),
    how_to_overwrite: str = "pass --overwrite true",
) -> Path:
    """Save config, safetensors weights, generation config, tokenizer, a README and the run
    record (``run.json``) to ``out_dir``, with the manifest that lists them.

    ``state_dict`` replaces the model's own tensors (a sharded model's gathered weights).
    ``out_dir`` is checked and replaced by the rules of :mod:`lightning_xllama.export.target`:
    the files are written into a temporary sibling folder and moved into place when complete;
    with ``overwrite`` only an earlier export is replaced, and only the files its manifest lists.
    ``protected`` names paths the target must not hold (the checkpoint, the run's folders).
    """

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        if card is not None:
            (folder / "README.md").write_text(card)
        if run_record is not None:
            write_run_record(run_record, folder)

    return write_export(out_dir, write, overwrite, protected, how_to_overwrite)


# --- reading checkpoints ------------------------------------------------------------------------
def _sharded_model_state(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The model tensors of a sharded checkpoint folder, whole, in one process."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    state = {
        name: torch.empty(shape, dtype=metadata[f"state_dict.{name}"].properties.dtype)
        for name, shape in shapes.items()
    }
    no_dist = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(
            {"state_dict": state}, checkpoint_id=str(path), no_dist=no_dist
        )  # the optimizer is not read
    return state


def load_checkpoint_model(
    ckpt: str | Path, base: Optional[str] = None, trust_remote_code: bool = False
):
    """The Hugging Face model of a Lightning checkpoint of ``XLlamaModule``, and the checkpoint's
    other contents. ``base`` overrides the model folder the checkpoint was trained from.

    ``trust_remote_code`` is the caller's, never the checkpoint's: a checkpoint trained with it on
    is refused unless the caller turns it on (its model folder's Python would run)."""
    ckpt = Path(ckpt)
    checkpoint = read_checkpoint(ckpt)
    saved = checkpoint.get("hyper_parameters") or {}
    check_remote_code(ckpt, saved, trust_remote_code, "--trust_remote_code true")
    hparams = {**saved, "trust_remote_code": trust_remote_code}
    if base is None:
        base = trained_base_model(ckpt, checkpoint)
    else:
        check_model_path(base)
    register_attention()  # a checkpoint trained with sdpa_varlen is rebuilt with it
    lora = hparams.get("lora_rank") is not None
    if lora:  # the checkpoint holds the adapters: the base weights come from its folder
        model = lora_model(base, hparams)
    else:
        model = empty_model(
            base,
            hparams.get("attn_implementation", "sdpa"),
            trust_remote_code,
        )
    full = model.state_dict()
    shapes = {MODEL_PREFIX + k: tuple(full[k].shape) for k in checkpointed_keys(model)}
    check_checkpoint_shapes(ckpt, shapes)
    if ckpt.is_dir():
        state = _sharded_model_state(ckpt, shapes)
    else:
        state = {
            k: v for k, v in checkpoint.pop("state_dict").items() if k.startswith(MODEL_PREFIX)
        }
    state = {k[len(MODEL_PREFIX) :]: v for k, v in state.items()}
    if lora:
        load_adapters(model, state)
        model.eval()
        checkpoint["base_model"] = base
        return model, checkpoint
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    reset_rotary_buffers(model, torch.device("cpu"))
    leftover = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{ckpt}: these tensors of {base} were not in the checkpoint: {leftover}")
    model.eval()
    checkpoint["base_model"] = base
    return model, checkpoint


def trained_base_model(ckpt: str | Path, checkpoint: dict) -> str:
    """The base model a checkpoint was trained from, as ``fit`` saw it: the saved
    ``model_name_or_path`` when it is a hub name or exists from here, else the absolute folder
    the run record kept (a relative path was relative to the folder ``fit`` ran in). Missing:
    an error that says ``--model`` sets it."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("model_name_or_path")
    if saved is None:
        raise ValueError(
            f"{ckpt} names no base model (hyper_parameters.model_name_or_path); pass --model "
            "with the base model's folder or hub name"
        )
    record = checkpoint.get(CHECKPOINT_KEY) or {}
    folder = record.get("model_folder") if isinstance(record, dict) else None
    candidates = [saved] + ([folder] if folder and folder != saved else [])
    for candidate in candidates:
        if Path(candidate).expanduser().is_dir():
            check_model_path(candidate)
            return candidate
    if not looks_like_local_path(saved):  # a hub name
        return saved
    tried = " or ".join(repr(c) for c in candidates)
    raise FileNotFoundError(
        f"{ckpt} was trained from the base model {tried}, which does not exist here; pass "
        "--model with the base model's folder (or hub name)"
    )


def lora_model(base: str, hparams: dict, dtype: Optional[torch.dtype] = None):
    """``base`` loaded with ``from_pretrained`` (in ``dtype``, default fp32) and wrapped in the
    LoRA adapters ``hparams`` (``XLlamaModule``'s) describe, freshly initialised: a checkpoint's
    adapters load into it."""
    from transformers import AutoModelForCausalLM

    from lightning_xllama.training.building import ModelSettings
    from lightning_xllama.training.lora import apply_lora

    names = {f.name for f in fields(ModelSettings)} - {"model_name_or_path"}
    settings = ModelSettings(base, **{k: v for k, v in hparams.items() if k in names})
    model = AutoModelForCausalLM.from_pretrained(
        base,
        attn_implementation=settings.attn_implementation,
        trust_remote_code=settings.trust_remote_code,
        use_safetensors=None,
        dtype=dtype or torch.float32,
    )
    return apply_lora(model, settings)


def load_adapters(model, state: dict) -> None:
    """Load the adapter tensors ``state`` into the peft ``model``: they must be exactly its
    trainable tensors (the frozen base is the model's own)."""
    expected = set(checkpointed_keys(model))
    if set(state) != expected:
        differ = sorted(set(state) ^ expected)
        raise ValueError(
            f"the adapters do not fit the LoRA model: {len(differ)} tensor(s) missing or "
            f"unexpected, e.g. {differ[:3]}"
        )
    model.load_state_dict(state, strict=False)


def lora_export_model(model, lora_output: LoraOutput):
    """What a LoRA export saves of the peft ``model``: the base with the adapters merged into its
    weights (``merged``), or the peft model itself, whose ``save_pretrained`` writes the adapter
    folder (``adapter``)."""
    if lora_output not in get_args(LoraOutput):
        raise ValueError(f"lora_output must be one of {get_args(LoraOutput)}, got {lora_output!r}")
    return model.merge_and_unload() if lora_output == "merged" else model


# --- the model card -----------------------------------------------------------------------------
def _protected_paths(ckpt: str | Path, model: Optional[str]) -> list[tuple[Path, str]]:
    """What an export target must not hold: the checkpoint read, and the base model folder."""
    protected = [(Path(ckpt), "the checkpoint being exported")]
    if model is not None and Path(model).exists():
        protected.append((Path(model), "the base model"))
    return protected


def export_checkpoint(
    ckpt: str | Path,
    out: str | Path,
    model: Optional[str] = None,
    dtype: Optional[str] = None,
    overwrite: bool = False,
    lora_output: Optional[LoraOutput] = None,
    trust_remote_code: bool = False,
) -> Path:
    """Write the Hugging Face folder of a checkpoint (see :func:`export`); returns the folder."""
    protected = _protected_paths(ckpt, model)
    check_export_target(out, overwrite, protected)  # before any loading
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    hf_model, checkpoint = load_checkpoint_model(ckpt, model, trust_remote_code)
    lora = (checkpoint.get("hyper_parameters") or {}).get("lora_rank") is not None
    if lora_output is not None and not lora:
        raise ValueError(
            f"{ckpt} was trained without LoRA (no lora_rank): it has no adapters, so lora_output "
            "does not apply; leave it unset"
        )
    if lora:
        hf_model = lora_export_model(hf_model, lora_output or "merged")
    problem = nonfinite_weights(hf_model.named_parameters())  # before anything is written
    if problem is not None:
        raise ValueError(
            f"{ckpt}: {problem}: the run diverged before this checkpoint; export an earlier one. "
            f"Nothing was written to {out}"
        )
    if dtype is not None:
        hf_model.to(DTYPES[dtype])
        problem = nonfinite_weights(hf_model.named_parameters()) if dtype == "fp16" else None
        if problem is not None:
            raise ValueError(
                f"{ckpt}: as fp16, {problem} (beyond fp16's range); export as bf16 or fp32. "
                f"Nothing was written to {out}"
            )
    tokenizer = load_tokenizer(checkpoint["base_model"], trust_remote_code)
    plan = saved_data_plan(checkpoint)
    if plan is None:
        print(
            f"note: {ckpt} holds no data plan (written before the DataModule saved one); the model card's "
            "mixture is re-read from the data module's settings and run.json has no data_plan"
        )
    return save_hf_folder(
        hf_model,
        tokenizer,
        out,
        overwrite,
        card=model_card(
            checkpoint, adapter=lora and lora_output == "adapter", config=hf_model.config
        ),
        run_record=checkpoint_run_record(checkpoint, plan),
        protected=_protected_paths(ckpt, checkpoint["base_model"]),  # checked again on writing
    )
