"""Ctrl-C (SIGINT to the whole foreground process group, loader workers included) is handled as
SIGTERM: with a saving callback the step is finished, saved and the run resumes; without one the
steps lost are named."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from test_faults import fit_config, resumable, start_fit


def interrupt_at_step(run, marker: Path, step: int) -> str:
    """Ctrl-C once ``step`` optimizer steps are done; the run's output."""
    deadline = time.monotonic() + 240
    while not (marker.exists() and int(marker.read_text()) >= step):
        assert run.poll() is None, run.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"training did not reach step {step}"
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGINT)
    return run.communicate(timeout=120)[0]


def slow_steps(marker: Path) -> dict:
    return {"class_path": "fault_callbacks.SlowSteps", "init_args": {"marker": str(marker)}}


@pytest.mark.slow
def test_ctrl_c_saves_at_a_step_boundary_and_resume_skips_a_truncated_last(
    tiny_model, tiny_data, tmp_path
):
    marker = tmp_path / "steps.txt"
    callbacks = [
        resumable(every_n_train_steps=1, save_top_k=-1, save_last=True),
        slow_steps(marker),
    ]
    config = fit_config(tmp_path, tiny_model, tiny_data, callbacks, limit_val_batches=0)
    output = interrupt_at_step(start_fit(config), marker, 3)
    assert "SIGINT received: saving and stopping after step" in output, output[-3000:]
    step = int(re.search(r"saving and stopping after step (\d+)", output).group(1))
    assert f"stopped by SIGINT; steps up to {step} are saved" in output
    assert "KeyboardInterrupt" not in output
    folder = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints"
    last = folder / "last.ckpt"
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == step

    data = last.read_bytes()  # a save cut short under the final name, as a copy across filesystems
    last.write_bytes(data[: len(data) // 3])
    resumed = start_fit(config, "--ckpt_path", "last", "--trainer.max_steps", str(step + 1))
    output = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"{last} does not load" in output, output[-3000:]
    assert f"resuming from {folder / f'epoch=0-step={step}.ckpt'}" in output
    assert "training data resumes at epoch 0" in output
    assert "not resumable" not in output


@pytest.mark.slow
def test_ctrl_c_without_a_saving_checkpoint_names_the_steps_lost(tiny_model, tiny_data, tmp_path):
    marker = tmp_path / "steps.txt"
    callbacks = [
        slow_steps(marker),
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True},
        },
    ]
    config = fit_config(tmp_path, tiny_model, tiny_data, callbacks, limit_val_batches=0)
    run = start_fit(config)
    output = interrupt_at_step(run, marker, 3)
    assert run.returncode == 1, output[-3000:]
    assert re.search(r"stopped by SIGINT after optimizer step \d+; steps 1-\d+ are in no", output)
    assert "KeyboardInterrupt" not in output
