"""Save the tuned model as a Hugging Face folder when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.export import MODEL_PREFIX, model_card, save_hf_folder
from lightning_xllama.run_record import build_run_record


class HFExport(L.Callback):
    """At the end of ``fit``, write ``output_dir`` (config, safetensors, tokenizer, model card and
    the run record ``run.json``), gathering the weights first when the model is sharded.

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
        # the weights whole, gathered from every rank when the model is sharded (a collective)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        root = trainer.strategy.model if isinstance(trainer.strategy, FSDPStrategy) else pl_module
        full = get_model_state_dict(
            root, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if trainer.is_global_zero:
            state = {
                k[len(MODEL_PREFIX) :]: v for k, v in full.items() if k.startswith(MODEL_PREFIX)
            }
            record = {
                "base_model": pl_module.hparams.model_name_or_path,
                "hyper_parameters": dict(pl_module.hparams),
                "global_step": trainer.global_step,
                "epoch": trainer.current_epoch,
                **pl_module.training_record(),
            }
            datamodule = trainer.datamodule
            if datamodule is not None:
                record["datamodule_hyper_parameters"] = dict(datamodule.hparams)
                # under its class name, as a checkpoint holds it
                record[type(datamodule).__qualname__] = datamodule.state_dict()
            recorder = next((c for c in trainer.callbacks if isinstance(c, RunRecord)), None)
            run_record = (
                recorder.update(trainer, pl_module, "finished")
                if recorder is not None
                else build_run_record(trainer, pl_module, None, None, "finished")
            )
            out = save_hf_folder(
                pl_module.model,
                pl_module.tokenizer,
                self.output_dir,
                self.overwrite,
                state_dict=state,
                card=model_card(record),
                run_record=run_record,
            )
            rank_zero_info(f"Hugging Face model folder written to {out}")
        trainer.strategy.barrier("hf_export")
