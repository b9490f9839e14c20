"""A user's mistake is one ``error:`` line and exit status 2, from the trainer commands and the
tools alike: an unknown key names where it was given and the closest valid keys, a model path
that is a file says so; ``XLLAMA_DEBUG=1`` brings the traceback back. ``--help`` is unchanged."""

from __future__ import annotations

import re

import pytest
import yaml

from lightning_xllama.commands.main import main


def stopped(args: list[str], capsys) -> list[str]:
    """The lines ``main(args)`` printed to stderr, once it stopped with status 2."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    return capsys.readouterr().err.splitlines()


@pytest.fixture
def demo(demo_root, monkeypatch):
    monkeypatch.chdir(demo_root)
    return yaml.safe_load((demo_root / "configs" / "demo.yaml").read_text())


def test_an_unknown_key_in_a_config_file_is_one_line_with_the_closest_keys(demo, tmp_path, capsys):
    demo["data"]["init_args"]["batchsize"] = demo["data"]["init_args"].pop("batch_size")
    config = tmp_path / "x.yaml"
    config.write_text(yaml.safe_dump(demo))
    assert stopped(["fit", "--config", str(config)], capsys) == [
        f"error: unknown key 'data.init_args.batchsize' in {config}; did you mean: "
        "data.init_args.batch_size, data.init_args.batching, data.init_args.eval_batch_size?"
    ]
    demo["data"]["init_args"]["batch_size"] = demo["data"]["init_args"].pop("batchsize")
    demo["trainer"]["max_stepz"] = 3
    config.write_text(yaml.safe_dump(demo))
    [line] = stopped(["fit", "--config", str(config)], capsys)
    assert line.startswith(f"error: unknown key 'trainer.max_stepz' in {config}; did you mean: ")
    assert "trainer.max_steps" in line


def test_unknown_options_on_the_command_line_are_one_line_too(demo, capsys):
    [line] = stopped(
        ["fit", "--config", "configs/demo.yaml", "--model.init_args.lerning_rate", "1e-3"], capsys
    )
    assert line.startswith("error: unknown option '--model.init_args.lerning_rate'; did you mean: ")
    assert "--model.init_args.learning_rate" in line
    assert stopped(["export", "--ckpt", "x.ckpt", "--outt", "y"], capsys) == [
        "error: unknown option '--outt'; did you mean: --out?"
    ]
    assert stopped(
        ["fit", "--config", "configs/demo.yaml", "--data.init_args.batch_size", "many"], capsys
    ) == [
        "error: data.init_args.batch_size (on the command line): Expected a <class 'int'>. "
        "Got value: many"
    ]


def test_help_is_unchanged(demo, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--model.help" in out and "--ckpt_path" in out


def test_a_model_path_that_is_a_file_is_named_as_such(demo, capsys):
    weights = "artifacts/demo/base_model/config.json"
    [line] = stopped(
        ["fit", "--config", "configs/demo.yaml", "--model.init_args.model_name_or_path", weights],
        capsys,
    )
    assert line.startswith(f"error: model path '{weights}' is a file, not a folder")


@pytest.mark.parametrize(
    "args, message",
    [
        (  # a trainer command: raised while the classes are built
            ["fit", "--config", "configs/demo.yaml", "--model.init_args.learning_rate", "-1"],
            "error: XLlamaModule: learning_rate must be > 0, got -1.0",
        ),
        (  # a function command
            ["evaluate", "--model", "artifacts/demo/base_model"],
            "error: nothing to evaluate: give at least one evaluation (see --help)",
        ),
    ],
)
def test_user_errors_are_one_line_and_tracebacks_only_with_xllama_debug(
    args, message, demo, capsys, monkeypatch
):
    assert stopped(args, capsys)[-1:] == [message]
    monkeypatch.setenv("XLLAMA_DEBUG", "1")
    with pytest.raises(ValueError, match=re.escape(message.removeprefix("error: "))):
        main(args)
