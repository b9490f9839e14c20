"""A checkpoint never runs code: ``trust_remote_code`` comes from the command line or the config,
not from a checkpoint's hyperparameters. A checkpoint trained with it on, whose model folder's
``auto_map`` names Python in the folder, is refused by ``export``, ``fit``, ``validate`` and
``predict`` with the flag that turns it on, and that Python never runs."""

from __future__ import annotations

import json
import sys

import pytest
from checkpoint_runs import edited_checkpoint, fit_config, remote_code_model, train_checkpoint

from lightning_xllama.commands.main import main
from lightning_xllama.training.module import XLlamaModule


@pytest.fixture(scope="module")
def remote(tiny_model, tiny_data, tmp_path_factory):
    """(checkpoint asking for remote code, the marker its model folder's code writes, root)."""
    root = tmp_path_factory.mktemp("trust")
    marker = root / "marker.txt"
    folder = remote_code_model(tiny_model, root / "remote_model", marker)
    ckpt = edited_checkpoint(
        train_checkpoint(tiny_model, tiny_data, root / "run"),
        root / "asks.ckpt",
        model_name_or_path=str(folder),
        trust_remote_code=True,
    )
    return ckpt, marker, root


def refused(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    code = stopped.value.code
    return str(code) if isinstance(code, str) else capsys.readouterr().err


def test_export_refuses_a_checkpoint_asking_for_remote_code_and_runs_none(remote, tmp_path, capsys):
    ckpt, marker, _ = remote
    message = refused(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "hf")], capsys)
    assert "trust_remote_code: true" in message and "pass --trust_remote_code true" in message
    assert not marker.exists() and not (tmp_path / "hf").exists()


@pytest.mark.parametrize("command", ["fit", "validate", "predict"])
def test_trainer_commands_refuse_a_checkpoint_asking_for_remote_code_and_run_none(
    command, remote, tiny_model, tiny_data, tmp_path, capsys, monkeypatch
):
    ckpt, marker, root = remote
    monkeypatch.chdir(tmp_path)
    config = fit_config(tmp_path / "run.yaml", tiny_model, tiny_data, tmp_path / "runs")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"instruction": "say hello", "input": ""}) + "\n")
    extra = ["--data.init_args.predict_file", str(prompts)] if command == "predict" else []
    message = refused([command, "--config", str(config), "--ckpt_path", str(ckpt), *extra], capsys)
    lines = [line for line in message.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pass --model.init_args.trust_remote_code true" in lines[0]
    assert not marker.exists()


def test_the_users_own_flag_does_run_it(remote, tmp_path):
    """The refusal is not the only thing keeping the marker away: asked for, the code runs."""
    ckpt, marker, _ = remote
    main(
        [
            "export",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "hf"),
            "--trust_remote_code",
            "true",
        ]
    )
    assert marker.read_text() == "remote code ran"
    marker.unlink()
    for name in [n for n in sys.modules if n.endswith("modeling_marker")]:
        del sys.modules[name]  # imported again, the folder's code would run again


def test_load_from_checkpoint_in_python_runs_no_code_unless_asked(remote):
    ckpt, marker, _ = remote
    module = XLlamaModule.load_from_checkpoint(ckpt)  # builds the model: from_pretrained
    assert module.hparams.trust_remote_code is False and module.model is not None
    assert not marker.exists()
