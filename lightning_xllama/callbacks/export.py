"""Save the tuned model as a Hugging Face folder when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.export import save_hf_folder


class HFExport(L.Callback):
    """At the end of ``fit``, write ``output_dir`` (config, safetensors, tokenizer).

    Args:
        output_dir: folder to write; it must not exist unless ``overwrite`` is set.
        overwrite: replace an existing folder.
    """

    def __init__(self, output_dir: str, overwrite: bool = False):
        self.output_dir, self.overwrite = output_dir, overwrite

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        target = Path(self.output_dir)
        if stage == "fit" and not self.overwrite and target.exists() and any(target.iterdir()):
            raise FileExistsError(
                f"export target {target} exists; set overwrite: true on HFExport or choose another output_dir"
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            out = save_hf_folder(pl_module.model, pl_module.tokenizer, self.output_dir, self.overwrite)
            rank_zero_info(f"Hugging Face model folder written to {out}")
        trainer.strategy.barrier("hf_export")
