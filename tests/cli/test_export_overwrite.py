"""What an export may overwrite: only an earlier export, only the files its manifest lists, and
never the working directory, the checkpoint or the run; a failure leaves the earlier export."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from training_utils import fit_tiny, quiet_trainer, tiny_datamodule
from transformers import AutoConfig, AutoModelForCausalLM

import lightning_xllama.export.hf_folder
import lightning_xllama.export.target
from lightning_xllama.callbacks import HFExport, ResumableCheckpoint
from lightning_xllama.commands.main import main
from lightning_xllama.export.target import MANIFEST_FILE, MANIFEST_FORMAT, ExportTargetError
from lightning_xllama.runtime.run_record import read_run_record
from lightning_xllama.training.module import XLlamaModule


@pytest.fixture(scope="module")
def run(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """A run folder after two steps on one process: ``run/checkpoints/last.ckpt``."""
    root = tmp_path_factory.mktemp("overwrite") / "run"
    fit_tiny(
        tiny_model,
        tiny_data,
        {"cache_dir": str(root / "cache")},
        max_steps=2,
        enable_checkpointing=True,
        default_root_dir=str(root),
        callbacks=[ResumableCheckpoint(str(root / "checkpoints"))],
    )
    return root


def export(run: Path, out: Path | str, *extra: str) -> None:
    main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(out), *extra])


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to see that nothing changed."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def test_overwrite_refuses_the_current_folder_and_the_folders_above_it(run, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    (work / "sub" / "data.txt").write_text("also mine")
    before = contents(tmp_path)
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(SystemExit, match="the current working directory"):
            export(run, out, "--overwrite", "true")
    assert contents(tmp_path) == before


def test_overwrite_refuses_a_folder_holding_the_checkpoint_being_exported(run):
    before = contents(run)
    for out in (run, run / "checkpoints", run / "checkpoints" / "last.ckpt"):
        with pytest.raises(SystemExit, match="holds the checkpoint being exported"):
            export(run, out, "--overwrite", "true")
    assert contents(run) == before and (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("target", ["default_root_dir", "checkpoint_parent"])
def test_hf_export_refuses_a_folder_holding_the_run_before_training(
    tiny_model, tiny_data, tmp_path, target
):
    root = tmp_path / "run"
    earlier = root / "lightning_logs" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("step,train/loss\n0,5.0\n")
    checkpoints = tmp_path / "saved" / "checkpoints"
    output_dir = root if target == "default_root_dir" else checkpoints.parent
    trainer = quiet_trainer(
        max_steps=2,
        default_root_dir=str(root),
        logger=CSVLogger(str(root)),
        enable_checkpointing=True,
        callbacks=[
            ModelCheckpoint(dirpath=str(checkpoints)),
            HFExport(str(output_dir), overwrite=True),
        ],
    )
    module = XLlamaModule(tiny_model, learning_rate=1e-3)
    with pytest.raises(ExportTargetError, match=re.escape(f"export target {output_dir} holds ")):
        trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    assert trainer.global_step == 0  # refused in setup, before training
    assert (earlier / "metrics.csv").read_text() == "step,train/loss\n0,5.0\n"


def test_hf_export_replaces_an_earlier_export_when_fit_ends(run, tiny_model, tiny_data, tmp_path):
    out = tmp_path / "hf"
    export(run, out)
    (out / "notes.txt").write_text("mine")
    fit_tiny(
        tiny_model,
        tiny_data,
        max_steps=1,
        default_root_dir=str(tmp_path / "run"),
        callbacks=[HFExport(str(out), overwrite=True)],
    )
    assert (out / "notes.txt").read_text() == "mine"
    assert (
        read_run_record(out)["status"] == "finished" and manifest(out)["format"] == MANIFEST_FORMAT
    )
    AutoModelForCausalLM.from_pretrained(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder


def test_overwrite_refuses_a_folder_that_is_not_an_earlier_export(run, tiny_model, tmp_path):
    base = tmp_path / "base_model"  # config.json and weights, but no export manifest
    shutil.copytree(tiny_model, base)
    foreign = tmp_path / "foreign"  # a manifest, but not one an export wrote
    foreign.mkdir()
    (foreign / MANIFEST_FILE).write_text(json.dumps({"files": ["notes.txt"]}))
    (foreign / "notes.txt").write_text("mine")
    before = contents(tmp_path)
    for out in (base, foreign):
        for flags in (["--overwrite", "true"], []):
            with pytest.raises(
                SystemExit, match=f"{out} exists, is not empty and is not an earlier"
            ):
                export(run, out, *flags)
    assert contents(tmp_path) == before


def test_overwrite_replaces_an_earlier_export_and_keeps_what_else_is_in_the_folder(run, tmp_path):
    out = tmp_path / "hf"
    export(run, out, "--dtype", "bf16")
    (out / "notes.txt").write_text("mine")
    (out / "eval").mkdir()
    (out / "eval" / "scores.json").write_text("{}")
    # a file an older version of the export wrote and lists, which this one no longer writes
    (out / "pytorch_model.bin").write_bytes(b"old weights")
    old = manifest(out)
    (out / MANIFEST_FILE).write_text(
        json.dumps({**old, "files": [*old["files"], "pytorch_model.bin"]})
    )

    with pytest.raises(SystemExit, match="an earlier export\\); pass --overwrite true"):
        export(run, out)
    export(run, out, "--overwrite", "true")

    assert (out / "notes.txt").read_text() == "mine" and (out / "eval" / "scores.json").is_file()
    assert not (out / "pytorch_model.bin").exists()
    assert AutoConfig.from_pretrained(out).torch_dtype == torch.float32  # was bf16
    written = set(contents(out)) - {"notes.txt", "eval/scores.json", MANIFEST_FILE}
    assert set(manifest(out)["files"]) == written and "model.safetensors" in written
    AutoModelForCausalLM.from_pretrained(out)
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary or set-aside folder


def test_overwrite_refuses_to_replace_a_file_the_earlier_export_did_not_write(run, tmp_path):
    out = tmp_path / "hf"
    export(run, out)
    (out / "README.md").write_text("my own notes")  # the user's, once unlisted
    old = manifest(out)
    old["files"].remove("README.md")
    (out / MANIFEST_FILE).write_text(json.dumps(old))
    before = contents(out)
    with pytest.raises(SystemExit, match=r"holds \['README.md'\], which the earlier export"):
        export(run, out, "--overwrite", "true")
    assert contents(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_a_failure_while_writing_leaves_the_earlier_export_and_no_temporary_folder(
    run, tmp_path, monkeypatch
):
    out = tmp_path / "hf"
    export(run, out)
    before = contents(out)

    def disk_full(record, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lightning_xllama.export.hf_folder, "write_run_record", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export(run, out, "--overwrite", "true")
    assert contents(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_a_failure_while_moving_the_new_files_in_restores_the_earlier_export(
    run, tmp_path, monkeypatch
):
    out = tmp_path / "hf"
    export(run, out)
    (out / "notes.txt").write_text("mine")
    before = contents(out)
    replace, failed = os.replace, []

    def fail_on_the_weights(source, dest):
        # once, moving the new weights in: after some new files are in place
        if Path(dest) == out / "model.safetensors" and not failed:
            failed.append(dest)
            raise OSError(5, "Input/output error")
        replace(source, dest)

    monkeypatch.setattr(lightning_xllama.export.target.os, "replace", fail_on_the_weights)
    with pytest.raises(OSError, match="Input/output error"):
        export(run, out, "--overwrite", "true")
    monkeypatch.undo()
    assert contents(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]
