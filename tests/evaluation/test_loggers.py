"""Evaluation samples and probe plots in TensorBoard and Weights & Biases (offline), written by a
real ``Trainer.fit`` through Lightning's own loggers and read back from their files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from ddp_callbacks import evaluation_callbacks
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.training.module import XLlamaModule

TABLES = ["val/translation/en-syn_far/samples", "val/qa/syn_far/samples"]
PLOT = "val/probe/en-syn_far/alignment"


def fit_with(logger, tiny_model, tiny_data) -> None:
    """One training step; the evaluations run before it (step 0) and after it (step 1)."""
    trainer = quiet_trainer(
        max_steps=1,
        val_check_interval=1,
        limit_val_batches=1,
        logger=logger,
        callbacks=evaluation_callbacks(tiny_data),
    )
    trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)
def test_tensorboard_gets_sample_tables_and_probe_plots(tiny_model, tiny_data, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    fit_with(logger, tiny_model, tiny_data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    for key in TABLES:
        texts = events.Tensors(f"{key}/text_summary")
        assert [event.step for event in texts] == [0, 1]
        table = texts[0].tensor_proto.string_val[0].decode()
        assert table.startswith("| ") and table.count("\n") >= 2  # header, rule, rows
    translation = events.Tensors(f"{TABLES[0]}/text_summary")[0].tensor_proto.string_val[0]
    assert translation.decode().startswith("| source | reference | hypothesis | language |")

    images = events.Images(PLOT)
    assert [image.step for image in images] == [0, 1]
    assert images[0].encoded_image_string.startswith(b"\x89PNG") and images[0].width > 100
    assert "val/probe/en-syn_far/peak_layer" in events.Tags()["scalars"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_wandb_offline_run_holds_sample_tables_and_probe_plots(
    tiny_model, tiny_data, tmp_path, monkeypatch
):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, no account
    monkeypatch.setenv("WANDB_SILENT", "true")
    for setting in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(setting, str(tmp_path / "home"))
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="xllama-test")
    try:
        fit_with(logger, tiny_model, tiny_data)
    finally:
        wandb.finish()

    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    for key in TABLES:
        tables = sorted((media / "table" / Path(key).parent).glob("samples_*.table.json"))
        assert len(tables) == 2  # step 0 and step 1
        table = json.loads(tables[0].read_text())
        assert table["data"] and len(table["columns"]) == len(table["data"][0])
    translation = json.loads(
        next((media / "table" / Path(TABLES[0]).parent).glob("*.json")).read_text()
    )
    assert translation["columns"] == ["source", "reference", "hypothesis", "language"]
    plots = list((media / "images" / Path(PLOT).parent).glob("alignment_*.png"))
    assert len(plots) == 2 and all(p.read_bytes().startswith(b"\x89PNG") for p in plots)
    assert list(run.glob("run-*.wandb"))  # the run itself, for ``wandb sync`` later
