"""Training on nothing is an error: when the length limit leaves no example to train on, ``fit``
stops before step 1 naming every stream and its counts; a stream losing more than half its
examples to the limit is warned about when fit starts."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from conftest import run_cli
from fit_configs import coit_fit_config, write_config
from training_utils import tiny_datamodule

from lightning_xllama.data.report import data_report_text


def fit_config(tmp_path: Path, tiny_model: str, tiny_data: Path, **data) -> Path:
    """A small CoIT ``fit`` as a user writes it, checkpointing on (Lightning's default)."""
    config = coit_fit_config(
        tmp_path,
        tiny_model,
        tiny_data,
        data={"batch_size": 4, "val_examples_per_stream": 4, **data},
        max_steps=2,
        limit_val_batches=0,
    )
    return write_config(tmp_path / "run.yaml", config)


def test_fit_on_examples_all_too_long_stops_before_step_one_naming_streams_and_counts(
    tiny_model, tiny_data, tmp_path
):
    config = fit_config(tmp_path, tiny_model, tiny_data, max_length=8)
    run = run_cli(["fit", "--config", str(config)], tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert not list(tmp_path.rglob("*.ckpt")), "a checkpoint was written for a run on nothing"
    assert "train/loss" not in output
    message = next(line for line in output.splitlines() if "nothing to train on" in line)
    assert "max_length 8" in message
    for stream in ("english", "translated", "parallel"):
        assert f"{stream} (" in message
    # each stream's figures: units read, skipped, checked, dropped for length, kept
    assert "120 units read" in message and "200 units read" in message
    assert "dropped for length" in message and "0 kept" in message
    assert "Raise max_length" in message


def test_a_stream_losing_most_of_its_examples_to_the_limit_is_warned_about_at_fit_start(
    tiny_model, tiny_data, tmp_path
):
    # a limit between the parallel stream's median and longest example: more than half of it is
    # dropped, some of it kept
    probe = tiny_datamodule(tiny_model, tiny_data, cache_dir=str(tmp_path / "cache"))
    probe.setup("fit")
    parallel = probe.readers[2]
    examples = [parallel.example(item) for item in parallel.items(0, 0, parallel.size)]
    lengths = sorted(len(e["input_ids"]) for e in probe.encode(examples))
    limit = lengths[len(lengths) // 4]
    assert lengths[0] <= limit < lengths[len(lengths) // 2]

    datamodule = tiny_datamodule(
        tiny_model, tiny_data, max_length=limit, overflow="drop", cache_dir=str(tmp_path / "cache")
    )
    datamodule.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="stream parallel: .* lost to max_length") as warned:
        datamodule.setup("fit")
    message = next(str(w.message) for w in warned if "stream parallel:" in str(w.message))
    check = {s["name"]: s["length_check"] for s in datamodule.data_report()["streams"]}
    lost = check["parallel"]["examples"] - check["parallel"]["kept"]
    assert lost > check["parallel"]["examples"] / 2 and check["parallel"]["kept"] > 0
    assert f"{lost} of {check['parallel']['examples']}" in message
    assert f"max_length {limit}" in message
    assert sum(check["parallel"]["dropped"].values()) == lost
    # the report fit prints names the loss too
    text = data_report_text(datamodule.data_report())
    assert f"parallel: {lost} of {check['parallel']['examples']} training examples" in text


def test_without_a_trainer_setup_reads_the_streams_without_the_length_check(
    tiny_model, tiny_data, tmp_path
):
    """``data stats`` and the baselines set the module up outside ``fit``: they see the figures
    of a run on nothing instead of an error."""
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, max_length=8, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup("fit")
    assert all(s["length_check"] is None for s in datamodule.data_report()["streams"])
    with pytest.raises(ValueError, match=r"nothing to train on: .*english \("):
        datamodule.check_lengths()
