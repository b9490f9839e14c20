"""How a run ends, as the user sees it: a diverged ``fit`` exits 1 with one line and leaves the
earlier export alone; ``export`` refuses a checkpoint with NaN weights; ``run.json`` records
every exit (``diverged``, ``failed`` with the error, ``stopped`` with the last saved step)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import run_cli
from fault_callbacks import SignalSelf
from fit_configs import coit_fit_config, write_config
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from training_utils import fit_tiny, quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import HFExport, ResumableCheckpoint, RunRecord
from lightning_xllama.commands.main import main
from lightning_xllama.runtime.run_record import CHECKPOINT_KEY, read_run_record
from lightning_xllama.training.module import XLlamaModule


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def fit_config(tmp_path: Path, tiny_model: str, tiny_data: Path, learning_rate: float) -> Path:
    """A user's YAML: a small CoIT run that exports to ``final_model`` when it ends."""
    export = {
        "class_path": "lightning_xllama.callbacks.HFExport",
        "init_args": {"output_dir": str(tmp_path / "final_model"), "overwrite": True},
    }
    config = coit_fit_config(
        tmp_path,
        tiny_model,
        tiny_data,
        learning_rate=learning_rate,
        data={"batch_size": 2, "val_examples_per_stream": 4},
        max_steps=20,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[export],
    )
    return write_config(tmp_path / "run.yaml", config)


def test_a_diverged_fit_exits_1_with_one_line_and_keeps_the_earlier_export(
    tiny_model, tiny_data, tmp_path
):
    out = tmp_path / "final_model"
    fit_tiny(tiny_model, tiny_data, max_steps=1, callbacks=[HFExport(str(out))])
    before = contents(out)

    result = run_cli(
        ["fit", "--config", str(fit_config(tmp_path, tiny_model, tiny_data, 100.0))], tmp_path
    )

    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0].startswith("error: training diverged at optimizer step ")
    assert "(learning rate " in errors[0] and "try a lower learning_rate" in errors[0]
    record = read_run_record(tmp_path / "runs" / "lightning_logs" / "version_0")
    assert record["status"] == "diverged" and record["error"] == errors[0][len("error: ") :]
    assert record["global_step"] < 19  # it stopped at the step, not after max_steps
    assert contents(out) == before


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """``last.ckpt`` after one step."""
    folder = tmp_path_factory.mktemp("exit_status") / "checkpoints"
    fit_tiny(
        tiny_model,
        tiny_data,
        max_steps=1,
        enable_checkpointing=True,
        default_root_dir=str(folder.parent),
        callbacks=[ModelCheckpoint(dirpath=str(folder), save_last=True)],
    )
    return folder / "last.ckpt"


def test_export_refuses_a_checkpoint_with_nonfinite_weights(checkpoint, tmp_path):
    out = tmp_path / "hf"
    main(["export", "--ckpt", str(checkpoint), "--out", str(out)])
    before = contents(out)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["state_dict"]["model.model.embed_tokens.weight"][0, :5] = math.nan
    saved["state_dict"]["model.lm_head.weight"][1, 0] = math.inf
    diverged = checkpoint.parent / "diverged.ckpt"
    torch.save(saved, diverged)

    with pytest.raises(SystemExit) as refused:
        main(["export", "--ckpt", str(diverged), "--out", str(out), "--overwrite", "true"])

    message = str(refused.value.code)
    assert message.startswith(f"error: {diverged}: 2 of ")
    assert "tensors hold NaN or infinite values (6 of " in message
    assert "e.g. model.embed_tokens.weight, lm_head.weight" in message
    assert f"Nothing was written to {out}" in message
    assert contents(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


class RaiseAt(L.Callback):
    """Raises ``error`` at the first micro-batch after optimizer step ``step``."""

    def __init__(self, step: int, error: BaseException):
        self.step, self.error = step, error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise self.error


def recorded_fit(tiny_model, tiny_data, tmp_path: Path, *callbacks: L.Callback) -> Path:
    """Fit with the run record and a logger; returns the log dir once fit has raised."""
    trainer = quiet_trainer(
        max_steps=6,
        logger=CSVLogger(str(tmp_path)),
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        callbacks=[RunRecord(), *callbacks],
    )
    with pytest.raises(BaseException) as raised:
        trainer.fit(
            XLlamaModule(tiny_model, learning_rate=1e-3),
            datamodule=tiny_datamodule(tiny_model, tiny_data),
        )
    assert not isinstance(raised.value, AssertionError)
    return Path(trainer.log_dir)


def test_a_failing_fit_records_failed_with_the_error_line(tiny_model, tiny_data, tmp_path):
    error = RuntimeError("disk quota exceeded writing shard 3\n(and a second line)")
    log_dir = recorded_fit(tiny_model, tiny_data, tmp_path, RaiseAt(2, error))
    record = read_run_record(log_dir)
    assert record["status"] == "failed" and record["global_step"] == 2
    assert record["error"] == "RuntimeError: disk quota exceeded writing shard 3"


def test_ctrl_c_records_stopped_with_the_last_saved_step(tiny_model, tiny_data, tmp_path):
    checkpoints = ResumableCheckpoint(str(tmp_path / "ckpt"), every_n_train_steps=2)
    try:
        log_dir = recorded_fit(
            tiny_model, tiny_data, tmp_path, RaiseAt(3, KeyboardInterrupt()), checkpoints
        )
    finally:  # Lightning ignores SIGINT once interrupted
        signal.signal(signal.SIGINT, signal.default_int_handler)
    record = read_run_record(log_dir)
    assert record["status"] == "stopped" and record["last_saved_step"] == 2
    assert "error" not in record


def test_sigterm_records_stopped_also_in_the_checkpoint_saved_on_the_way_out(
    tiny_model, tiny_data, tmp_path
):
    checkpoints = ResumableCheckpoint(str(tmp_path / "ckpt"), save_last=True)
    log_dir = recorded_fit(tiny_model, tiny_data, tmp_path, SignalSelf("step", step=2), checkpoints)
    record = read_run_record(log_dir)
    assert record["status"] == "stopped" and record["last_saved_step"] == 3
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3 and saved[CHECKPOINT_KEY]["status"] == "stopped"
    assert json.loads((log_dir / "run.json").read_text())["last_saved_step"] == 3
