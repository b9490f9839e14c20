"""Checkpoints written atomically where they live, and ``--ckpt_path last`` that skips one that
does not load."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_xllama.callbacks import ResumableCheckpoint
from lightning_xllama.runtime.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointSpaceError,
    atomic_save,
    checkpoint_problem,
    remove_partial_files,
)
from lightning_xllama.runtime.run_folder import latest_last_checkpoint


class Unpicklable:
    """An object whose serialisation fails: a save that breaks part-way."""

    def __reduce__(self):
        raise RuntimeError("cannot serialise this")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_that_loads(tmp_path):
    logs = tmp_path / "lightning_logs"
    for version, names in {
        0: ["last.ckpt"],
        1: ["step=24.ckpt", "step=25.ckpt", "last.ckpt"],
    }.items():
        folder = logs / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        for step, name in enumerate(names):
            torch.save({"global_step": step, "w": torch.zeros(100)}, folder / name)
            os.utime(folder / name, (1000 + step, 1000 + step))
    last = logs / "version_1" / "checkpoints" / "last.ckpt"
    truncate(last)
    assert "truncated" in checkpoint_problem(last) or "not a whole" in checkpoint_problem(last)
    with pytest.warns(UserWarning, match="does not load") as caught:
        found = latest_last_checkpoint(logs)
    assert found == logs / "version_1" / "checkpoints" / "step=25.ckpt"
    assert str(last) in str(caught[0].message) and str(found) in str(caught[0].message)

    for name in ("step=24.ckpt", "step=25.ckpt"):  # nothing of that run loads: the earlier run's
        truncate(logs / "version_1" / "checkpoints" / name)
    with pytest.warns(UserWarning, match="does not load"):
        assert latest_last_checkpoint(logs) == logs / "version_0" / "checkpoints" / "last.ckpt"
    truncate(logs / "version_0" / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="no other checkpoint"):
        latest_last_checkpoint(logs)


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    target = tmp_path / "checkpoints" / "last.ckpt"
    atomic_save({"global_step": 1, "w": torch.ones(1000)}, target)
    with pytest.raises(RuntimeError, match="cannot serialise"):
        atomic_save({"w": torch.zeros(10_000), "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    assert not any(temporary.iterdir())  # nothing written to the temporary folder


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only): a filesystem a checkpoint does not fit on."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_says_how_much_was_needed_and_keeps_the_previous_checkpoint(small_tmpfs):
    target = small_tmpfs / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, target)
    with pytest.raises(CheckpointSpaceError, match="no space left for checkpoint") as error:
        io.save_checkpoint({"global_step": 2, "w": torch.ones(600_000)}, target)
    message = str(error.value)
    assert str(target) in message and "2,400,000 expected" in message and "bytes free" in message
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["last.ckpt"]


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=2)


@pytest.mark.parametrize("save_last", [True, "link"])
def test_resumable_checkpoint_writes_through_the_atomic_writer(save_last, tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    made = []
    real = tempfile.mkstemp
    monkeypatch.setattr(
        tempfile, "mkstemp", lambda *a, **k: made.append(k.get("dir")) or real(*a, **k)
    )
    callback = ResumableCheckpoint(
        dirpath=str(tmp_path / "ckpt"), every_n_train_steps=2, save_last=save_last
    )
    trainer = L.Trainer(
        max_steps=4,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Tiny())
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert made and all(Path(d) == tmp_path / "ckpt" for d in made)  # beside the checkpoint
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "epoch=0-step=4.ckpt",
        "last.ckpt",
    ]
    assert checkpoint_problem(tmp_path / "ckpt" / "last.ckpt") is None
    assert (tmp_path / "ckpt" / "last.ckpt").is_symlink() == (save_last == "link")
    assert not any(temporary.iterdir())


def test_partial_files_a_killed_save_left_are_removed_and_counted(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    (tmp_path / ".last.ckpt.abc123.partial").write_bytes(b"x" * 10)
    (tmp_path / ".step=4.ckpt.def456.partial").write_bytes(b"x" * 5)
    assert remove_partial_files(tmp_path) == (2, 15)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
