"""Save the tuned model as a Hugging Face folder when training ends."""

from __future__ import annotations

from typing import get_args

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.export.hf_folder import (
    MODEL_PREFIX,
    LoraOutput,
    load_adapters,
    lora_export_model,
    lora_model,
    model_card,
    save_hf_folder,
)
from lightning_xllama.export.target import ExportTargetError, check_export_target
from lightning_xllama.runtime.run_record import build_run_record
from lightning_xllama.training.divergence import TrainingDiverged, nonfinite_weights

HOW_TO_OVERWRITE = "set overwrite: true on HFExport"


class HFExport(L.Callback):
    """At the end of ``fit``, write ``output_dir`` (config, safetensors, tokenizer, model card,
    the run record ``run.json`` and the export manifest), gathering the weights first when the
    model is sharded.

    The target is checked when ``fit`` sets up, so a refused folder stops the run before it
    trains, and again when writing. Refused: the current working directory or a folder above it,
    a folder that holds the run (the trainer's ``default_root_dir``, log dir, a logger's
    ``save_dir``, a checkpoint ``dirpath``, the checkpoint resumed from), an existing non-empty
    folder that is not an earlier export. ``overwrite`` replaces only an earlier export (a folder
    with the ``export_manifest.json`` an export wrote), and only the files its manifest lists; see
    :mod:`lightning_xllama.export.target`.

    A LoRA run gathers only the adapters; rank 0 puts them on a fresh copy of the base model and
    writes the merged model or the adapter folder.

    A diverged run writes nothing: training stopped by a NaN or infinite loss never reaches the
    end of ``fit``, and weights holding NaN or infinite values are refused before anything in
    ``output_dir`` is replaced (:class:`~lightning_xllama.training.divergence.TrainingDiverged`).

    Args:
        output_dir: folder to write; new or empty, or an earlier export with ``overwrite``.
        overwrite: replace an earlier export in ``output_dir``.
        lora_output: for a LoRA run: ``merged`` (the adapters merged into the base weights, a
            plain model folder) or ``adapter`` (peft's adapter folder, for
            ``PeftModel.from_pretrained`` on the base model).
    """

    def __init__(
        self, output_dir: str, overwrite: bool = False, lora_output: LoraOutput = "merged"
    ):
        if lora_output not in get_args(LoraOutput):
            raise ValueError(
                f"HFExport: lora_output must be one of {get_args(LoraOutput)}, got {lora_output!r}"
            )
        self.output_dir, self.overwrite, self.lora_output = output_dir, overwrite, lora_output

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # every rank: they see the same folders and fail together
            check_export_target(
                self.output_dir, self.overwrite, run_paths(trainer), HOW_TO_OVERWRITE
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        protected = run_paths(trainer)  # on every rank: trainer.log_dir is a collective
        # the folder may have changed while training: check again, and stop every rank together
        problem = None
        if trainer.is_global_zero:
            try:
                check_export_target(self.output_dir, self.overwrite, protected, HOW_TO_OVERWRITE)
            except ExportTargetError as err:
                problem = str(err)
        problem = trainer.strategy.broadcast(problem)
        if problem is not None:
            raise ExportTargetError(problem)
        # the weights whole, gathered from every rank when the model is sharded (a collective)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        lora = pl_module.hparams.get("lora_rank") is not None
        root = trainer.strategy.model if isinstance(trainer.strategy, FSDPStrategy) else pl_module
        full = get_model_state_dict(  # LoRA: the adapters only (DTensors gathered whole)
            root,
            options=StateDictOptions(
                full_state_dict=True, cpu_offload=True, ignore_frozen_params=lora
            ),
        )
        state = {k[len(MODEL_PREFIX) :]: v for k, v in full.items() if k.startswith(MODEL_PREFIX)}
        # rank 0 holds the gathered weights: it checks them, and every rank stops together
        problem = nonfinite_weights(state.items()) if trainer.is_global_zero else None
        problem = trainer.strategy.broadcast(problem)
        if problem is not None:
            raise TrainingDiverged(
                f"HFExport: the trained weights are not finite: {problem}; nothing was written "
                f"to {self.output_dir}"
            )
        if trainer.is_global_zero:
            model = pl_module.model
            if (
                lora
            ):  # the adapters on a fresh base (in the trained dtype), the training model as is
                dtype = next(pl_module.model.parameters()).dtype
                model = lora_model(
                    pl_module.hparams.model_name_or_path, dict(pl_module.hparams), dtype
                )
                load_adapters(model, state)
                model, state = lora_export_model(model.eval(), self.lora_output), None
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
                model,
                pl_module.tokenizer,
                self.output_dir,
                self.overwrite,
                state_dict=state,
                card=model_card(record, adapter=lora and self.lora_output == "adapter"),
                run_record=run_record,
                protected=protected,
                how_to_overwrite=HOW_TO_OVERWRITE,
            )
            rank_zero_info(f"Hugging Face model folder written to {out}")
        trainer.strategy.barrier("hf_export")


def run_paths(trainer: L.Trainer) -> list[tuple[str, str]]:
    """The run's folders and checkpoint, which an export target must not hold. A collective
    (``trainer.log_dir`` broadcasts): call it on every rank."""
    paths = [
        (trainer.default_root_dir, "the trainer's default_root_dir"),
        (trainer.log_dir, "the trainer's log dir"),
    ]
    paths += [(logger.save_dir, "a logger's save_dir") for logger in trainer.loggers]
    paths += [
        (callback.dirpath, "a checkpoint dirpath of this run")
        for callback in trainer.checkpoint_callbacks
        if getattr(callback, "dirpath", None)
    ]
    if trainer.ckpt_path:
        paths.append((trainer.ckpt_path, "the checkpoint this run resumed from"))
    return [(path, what) for path, what in paths if path]
