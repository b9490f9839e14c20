"""Writing a trained model as a Hugging Face folder that ``from_pretrained`` loads."""

from __future__ import annotations

import shutil
from pathlib import Path


def save_hf_folder(model, tokenizer, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Save config, safetensors weights, generation config and tokenizer to ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"export target {out} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
