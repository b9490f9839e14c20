"""A short real run's checkpoint and the fit config a user resumes it with, for the tests of what
a checkpoint may bring into a run (settings, remote code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from fit_configs import coit_fit_config, write_config
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.training.module import XLlamaModule


def train_checkpoint(tiny_model: str, tiny_data: Path, root: Path) -> Path:
    """One optimizer step at learning rate 1e-3, batch 2; ``root/lightning_logs/version_0/
    checkpoints/last.ckpt`` as ``fit`` with the CSV logger writes it (``--ckpt_path last`` finds
    it under ``--trainer.default_root_dir root``)."""
    trainer = quiet_trainer(
        max_steps=1,
        limit_val_batches=0,
        enable_checkpointing=True,
        logger=CSVLogger(root),
        callbacks=[ModelCheckpoint(save_last=True)],
    )
    datamodule = tiny_datamodule(tiny_model, tiny_data, cache_dir=str(root / "cache"))
    trainer.fit(XLlamaModule(tiny_model, learning_rate=1e-3), datamodule=datamodule)
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def edited_checkpoint(ckpt: Path, out: Path, **hyper_parameters) -> Path:
    """A copy of ``ckpt`` whose model hyperparameters say ``hyper_parameters``."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"].update(hyper_parameters)
    torch.save(checkpoint, out)
    return out


def remote_code_model(tiny_model: str, folder: Path, marker: Path) -> Path:
    """A copy of ``tiny_model`` whose config's ``auto_map`` names a model class in the folder's
    own ``modeling_marker.py``, which writes ``marker`` when its code runs (on import)."""
    shutil.copytree(tiny_model, folder)
    (folder / "modeling_marker.py").write_text(
        "from pathlib import Path\n\n"
        "from transformers import LlamaForCausalLM\n\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n\n\n"
        "class MarkerLlama(LlamaForCausalLM):\n"
        "    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_marker.MarkerLlama"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def fit_config(path: Path, tiny_model: str, tiny_data: Path, root: Path, **trainer) -> Path:
    """The run of :func:`train_checkpoint` as a user's YAML config, logging under ``root``."""
    config = coit_fit_config(
        root,
        tiny_model,
        tiny_data,
        learning_rate=1e-3,
        language_modules=None,
        data={
            "weights": {"english": 1.0, "translated": 1.0, "parallel": 1.0},
            "batch_size": 2,
            "seed": 7,
        },
        **{
            "max_steps": 2,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "enable_model_summary": False,
            "default_root_dir": str(root),
            **trainer,
        },
    )
    return write_config(path, config)
