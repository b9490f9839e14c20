"""``export``: a Hugging Face folder (+ model card, run record, manifest) from a checkpoint file or
sharded folder; :mod:`lightning_xllama.export` does the work."""

from __future__ import annotations

from typing import Literal, Optional

from lightning_xllama.export.hf_folder import LoraOutput, export_checkpoint


def export(
    ckpt: str,
    out: str,
    model: Optional[str] = None,
    dtype: Optional[Literal["fp32", "bf16", "fp16"]] = None,
    overwrite: bool = False,
    lora_output: Optional[LoraOutput] = None,
    trust_remote_code: bool = False,
) -> None:
    """Write a Hugging Face model folder from a Lightning checkpoint (a file or a sharded folder).

    The folder also gets ``export_manifest.json`` (format ``lightning_xllama.hf_export``, a
    version, and the list of every file the export wrote); only a folder with that manifest is an
    earlier export that ``--overwrite true`` may replace. Replacing removes only the files the
    earlier manifest lists: anything else in the folder stays. The new export is written into a
    temporary sibling folder (``.NAME.tmp-XXXX``) and moved into place when complete, so a failure
    leaves the earlier export as it was.

    A checkpoint whose weights hold NaN or infinite values (a diverged run) is refused, naming
    how many tensors and values, before anything in ``out`` is touched.

    Refused before anything is loaded or touched, with or without ``--overwrite``: the current
    working directory or a folder above it, a folder that holds the checkpoint (or the base
    model), an existing non-empty folder that is not an earlier export (``config.json`` alone
    does not make one), an existing file.

    Args:
        ckpt: the checkpoint: a ``.ckpt`` file, or the folder a sharded checkpoint is.
        out: the folder to write: new, empty, or an earlier export (with ``--overwrite true``).
            Refused: the current folder or one above it, a folder holding the checkpoint or the
            base model, a non-empty folder that is not an earlier export.
        model: the base model folder or hub name (default: the one the checkpoint was trained from).
        dtype: dtype of the saved weights (default: as trained, fp32); ``bf16`` halves the size.
        overwrite: replace an earlier export in ``out`` (a folder holding the
            ``export_manifest.json`` an export wrote): only the files it lists are removed,
            anything else stays; the new files are written beside it first and moved in when
            complete.
        lora_output: for a LoRA checkpoint: ``merged`` (default; the adapters merged into the
            base weights, a plain model folder) or ``adapter`` (peft's adapter folder, a few MB,
            loaded with ``PeftModel.from_pretrained`` on the base model).
        trust_remote_code: run the Python code of the base model's folder (its config's
            ``auto_map``); off unless you trust the source. A checkpoint trained with it on is
            refused until you pass it here: the checkpoint's own setting never turns it on.
    """
    try:
        folder = export_checkpoint(
            ckpt, out, model, dtype, overwrite, lora_output, trust_remote_code
        )
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"Hugging Face model folder written to {folder}")
