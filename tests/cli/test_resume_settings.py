"""One rule for a run started from a checkpoint, whether ``--ckpt_path`` names the file or
``last``: the user's settings are the run's (the learning rate reaching the optimizer too), every
one that differs from the checkpoint's is listed in one warning, and those that cannot change
(LoRA, a sharded checkpoint's strategy) are refused together, in one line."""

from __future__ import annotations

import shutil

import pytest
import torch
from checkpoint_runs import edited_checkpoint, fit_config, train_checkpoint

from lightning_xllama.commands.fit import XLlamaCLI
from lightning_xllama.commands.main import main
from lightning_xllama.training.strategies import METADATA_FILE


@pytest.fixture(scope="module")
def run(tiny_model, tiny_data, tmp_path_factory):
    """(last.ckpt of a one-step run at learning rate 1e-3, its root, another model folder)."""
    root = tmp_path_factory.mktemp("resume")
    ckpt = train_checkpoint(tiny_model, tiny_data, root)
    other = shutil.copytree(tiny_model, root / "other_model")
    return ckpt, root, str(other)


def resumed(ckpt_path: str, config, other: str) -> tuple[XLlamaCLI, str]:
    """``fit`` from ``ckpt_path`` with another model path, learning rate and batch size; the CLI
    and the warning it gave about differing settings."""
    with pytest.warns(UserWarning, match="differ from the checkpoint") as warned:
        cli = XLlamaCLI(
            args=[
                "fit",
                "--config",
                str(config),
                "--ckpt_path",
                ckpt_path,
                "--model.init_args.model_name_or_path",
                other,
                "--model.init_args.learning_rate",
                "0.05",
                "--data.init_args.batch_size",
                "3",
            ]
        )
    warnings = [str(w.message) for w in warned if "differ from the checkpoint" in str(w.message)]
    assert len(warnings) == 1
    return cli, warnings[0]


@pytest.mark.parametrize("given", ["file", "last"])
def test_the_users_settings_win_and_each_difference_is_listed(
    given, run, tiny_model, tiny_data, tmp_path, monkeypatch
):
    ckpt, root, other = run
    monkeypatch.chdir(tmp_path)
    config = fit_config(tmp_path / "run.yaml", tiny_model, tiny_data, root)
    cli, warning = resumed(str(ckpt) if given == "file" else "last", config, other)

    assert cli.trainer.global_step == 2  # resumed from step 1
    assert cli.model.hparams.model_name_or_path == other
    assert cli.model.hparams.learning_rate == 0.05
    assert cli.datamodule.hparams.batch_size == 3
    # the restored optimizer and schedule run at the user's rate, not the checkpoint's
    assert [g["initial_lr"] for g in cli.trainer.optimizers[0].param_groups] == [0.05, 0.05]
    assert cli.trainer.lr_scheduler_configs[0].scheduler.base_lrs == [0.05, 0.05]
    lines = warning.splitlines()[1:]
    assert lines == [
        "  model.init_args.learning_rate: 0.001 in the checkpoint, 0.05 here",
        f"  model.init_args.model_name_or_path: {tiny_model!r} in the checkpoint, {other!r} here",
        "  data.init_args.batch_size: 2 in the checkpoint, 3 here",
    ]


def test_settings_that_cannot_change_are_refused_together_in_one_line(
    run, tiny_model, tiny_data, tmp_path, capsys, monkeypatch
):
    ckpt, root, _ = run
    monkeypatch.chdir(tmp_path)
    lora = edited_checkpoint(
        ckpt, tmp_path / "lora.ckpt", lora_rank=4, lora_target_modules=["q_proj"]
    )
    config = fit_config(tmp_path / "run.yaml", tiny_model, tiny_data, tmp_path / "runs")
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--config", str(config), "--ckpt_path", str(lora)])
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        f"error: --ckpt_path {lora}: these settings cannot change when starting from a "
        "checkpoint: model.init_args.lora_rank: 4 in the checkpoint, None here; "
        "model.init_args.lora_target_modules: ['q_proj'] in the checkpoint, None here. Set them "
        "as the checkpoint has them, or start a new run without --ckpt_path"
    ]
    assert not (tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints").exists()


def test_a_sharded_checkpoint_is_refused_under_a_strategy_that_cannot_load_it(
    run, tiny_model, tiny_data, tmp_path, capsys, monkeypatch
):
    ckpt, _, _ = run
    monkeypatch.chdir(tmp_path)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    sharded = tmp_path / "sharded.ckpt"  # the settings of a folder an FSDP2 run wrote
    sharded.mkdir()
    torch.save(
        {
            "hyper_parameters": saved["hyper_parameters"],
            "training_settings": {**saved["training_settings"], "strategy": "DecoderFSDP2Strategy"},
        },
        sharded / METADATA_FILE,
    )
    config = fit_config(tmp_path / "run.yaml", tiny_model, tiny_data, tmp_path / "runs")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--ckpt_path", str(sharded)])
    err = capsys.readouterr().err
    assert (
        f"trainer.strategy: {sharded} is a sharded checkpoint (FSDP2, DecoderFSDP2Strategy), "
        "which SingleDeviceStrategy cannot load" in err
    )
