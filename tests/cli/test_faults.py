"""Faults a scheduler or a user brings: SIGTERM to the whole process group, SIGTERM before or
without a saving checkpoint, two runs started into one folder, ``--ckpt_path last``, and a bad
setting raised while the classes are built."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli
from fit_configs import coit_fit_config, write_config
from lightning.pytorch.loggers import CSVLogger

from lightning_xllama.runtime.run_folder import claim_version, latest_last_checkpoint

HELPERS = REPO / "tests" / "helpers"


def fit_config(
    tmp_path: Path, tiny_model: str, tiny_data: Path, callbacks: list, **trainer
) -> Path:
    """A small CoIT run with loader workers, written as a user's YAML config."""
    config = coit_fit_config(
        tmp_path,
        tiny_model,
        tiny_data,
        learning_rate=1e-3,
        data={"batch_size": 2, "num_workers": 2, "val_examples_per_stream": 4},
        **{"max_steps": 40, "log_every_n_steps": 1, "callbacks": callbacks, **trainer},
    )
    return write_config(tmp_path / "run.yaml", config)


def start_fit(config: Path, *extra: str) -> subprocess.Popen:
    """``fit`` in its own process group (as a scheduler starts a job), helpers importable."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{HELPERS}",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lightning_xllama", "fit", "--config", str(config), *extra],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def checkpoint_step(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def resumable(**args) -> dict:
    return {"class_path": "lightning_xllama.callbacks.ResumableCheckpoint", "init_args": args}


@pytest.mark.slow
def test_group_sigterm_with_loader_workers_saves_at_a_step_boundary_and_resumes(
    tiny_model, tiny_data, tmp_path
):
    """SIGTERM to the whole group (the loader workers get it too) finishes the step, saves and
    exits 0; ``--ckpt_path last`` (no fixed checkpoint folder) resumes from that checkpoint."""
    marker = tmp_path / "steps.txt"
    callbacks = [
        resumable(every_n_train_steps=1000, save_last=True),
        {"class_path": "fault_callbacks.SlowSteps", "init_args": {"marker": str(marker)}},
    ]
    config = fit_config(tmp_path, tiny_model, tiny_data, callbacks, limit_val_batches=0)
    run = start_fit(config)
    deadline = time.monotonic() + 240
    while not (marker.exists() and int(marker.read_text()) >= 3):
        assert run.poll() is None, run.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "training did not reach step 3"
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGTERM)
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 0, output[-3000:]
    assert "killed by signal" not in output
    stopped = [line for line in output.splitlines() if "saving and stopping after step" in line]
    assert stopped, output[-3000:]
    step = int(stopped[0].rsplit(" ", 1)[1])
    last = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == step >= 3
    # the data report was printed when fit started, and kept in run.json
    assert "data report" in output and "parallel" in output
    record = json.loads((last.parent.parent / "run.json").read_text())
    assert [s["name"] for s in record["data_report"]["streams"]] == [
        "english",
        "translated",
        "parallel",
    ]
    assert all(s["passes_per_epoch"] > 0 for s in record["data_report"]["streams"])

    resumed = start_fit(config, "--ckpt_path", "last", "--trainer.max_steps", str(step + 2))
    output = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"resuming from {last}" in output
    metrics = (tmp_path / "runs" / "lightning_logs" / "version_1" / "metrics.csv").read_text()
    steps = {int(row.split(",")[1]) for row in metrics.splitlines()[1:] if row.split(",")[1]}
    assert min(steps) == step  # logged at step index `step`: optimizer step step + 1


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["sanity_check", "train_start"])
def test_sigterm_before_training_is_carried_to_the_first_step_and_saved(
    hook, tiny_model, tiny_data, tmp_path
):
    """A signal during the validation before training, or the evaluation callbacks' pass at
    train start, no longer ends the run unsaved: it trains to step 1, saves and exits 0."""
    callbacks = [
        {"class_path": "fault_callbacks.SignalSelf", "init_args": {"hook": hook}},
        resumable(save_last=True),
    ]
    config = fit_config(
        tmp_path, tiny_model, tiny_data, callbacks, num_sanity_val_steps=2, limit_val_batches=2
    )
    run = start_fit(config)
    output = run.communicate(timeout=240)[0]
    assert run.returncode == 0, output[-3000:]
    last = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "hook, step, message",
    [
        ("step", 2, "steps 1-3 are in no checkpoint"),
        ("sanity_check", None, "before this run's first optimizer step"),
    ],
)
def test_sigterm_without_a_saving_checkpoint_exits_1_saying_what_is_lost(
    hook, step, message, tiny_model, tiny_data, tmp_path
):
    callbacks = [
        {"class_path": "fault_callbacks.SignalSelf", "init_args": {"hook": hook, "step": step}},
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True},
        },
    ]
    config = fit_config(
        tmp_path, tiny_model, tiny_data, callbacks, num_sanity_val_steps=2, limit_val_batches=2
    )
    run = start_fit(config)
    output = run.communicate(timeout=240)[0]
    assert run.returncode == 1, output[-3000:]
    assert message in output, output[-1500:]


def test_two_runs_listing_the_same_versions_claim_different_folders(tmp_path, monkeypatch):
    """The race of two runs started together, forced: both list the folder before either
    creates its version, so both compute version_0; the second mkdir finds it taken."""
    first, second = CSVLogger(tmp_path), CSVLogger(tmp_path)
    stale = {id(first): [0], id(second): [0]}  # what each listed before the other claimed
    for logger in (first, second):
        listed = stale[id(logger)]
        real = logger._get_next_version
        monkeypatch.setattr(
            logger,
            "_get_next_version",
            lambda listed=listed, real=real: listed.pop() if listed else real(),
        )
    assert claim_version(first) == 0
    assert claim_version(second) == 1
    assert (first.log_dir, second.log_dir) == (
        str(tmp_path / "lightning_logs" / "version_0"),
        str(tmp_path / "lightning_logs" / "version_1"),
    )
    fixed = CSVLogger(tmp_path, version=7)
    assert claim_version(fixed) is None and fixed.version == 7  # a chosen version is kept


@pytest.mark.slow
def test_fit_claims_the_next_free_log_folder(tiny_model, tiny_data, tmp_path):
    (tmp_path / "runs" / "lightning_logs" / "version_0").mkdir(parents=True)  # an earlier run's
    config = fit_config(tmp_path, tiny_model, tiny_data, [], max_steps=1, limit_val_batches=0)
    run = start_fit(config, "--data.init_args.num_workers", "0")
    output = run.communicate(timeout=240)[0]
    assert run.returncode == 0, output[-3000:]
    assert (tmp_path / "runs" / "lightning_logs" / "version_1" / "metrics.csv").is_file()
    assert not any((tmp_path / "runs" / "lightning_logs" / "version_0").iterdir())


def test_ckpt_path_last_takes_the_newest_version_with_one_and_refuses_ambiguity(tmp_path):
    logs = tmp_path / "lightning_logs"
    for version, files in {
        0: ["checkpoints/last.ckpt"],
        2: ["checkpoints/last.ckpt", "checkpoints/epoch=0-step=4.ckpt"],
        3: ["checkpoints/epoch=0-step=1.ckpt"],  # no last: a run stopped before it saved one
        10: [],  # the folder this run just claimed
    }.items():
        (logs / f"version_{version}" / "checkpoints").mkdir(parents=True)
        for name in files:
            torch.save({}, logs / f"version_{version}" / name)  # a checkpoint that loads
    assert latest_last_checkpoint(logs) == logs / "version_2" / "checkpoints" / "last.ckpt"
    (logs / "version_3" / "checkpoints" / "last-v1.ckpt").write_text("")
    (logs / "version_3" / "checkpoints" / "last.ckpt").write_text("")
    with pytest.raises(ValueError, match="ambiguous") as error:
        latest_last_checkpoint(logs)
    assert "last-v1.ckpt" in str(error.value) and "version_3/checkpoints/last.ckpt" in str(
        error.value
    )
    with pytest.raises(FileNotFoundError, match="no version_N folder"):
        latest_last_checkpoint(tmp_path / "elsewhere")


def test_an_error_raised_while_building_the_classes_is_printed_alone(demo_root):
    result = run_cli(
        [
            "fit",
            "--config",
            "configs/demo.yaml",
            "--data.init_args.weights",
            "{english: 1, translated: 1}",
        ],
        cwd=demo_root,
    )
    assert result.returncode == 2
    assert "error: weights has no entry for stream(s) ['parallel']" in result.stderr
    assert "Union" not in result.stderr and "Traceback" not in result.stderr
