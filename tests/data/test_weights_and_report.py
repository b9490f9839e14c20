"""Stream weights that are checked, the data report that ``fit`` prints, and ``predict`` input
lines that are skipped and counted."""

from __future__ import annotations

import pytest
from training_utils import tiny_datamodule

from lightning_xllama.data.report import data_report_text


def test_a_stream_left_out_of_weights_is_an_error_naming_it(tiny_model, tiny_data):
    with pytest.raises(ValueError, match=r"no entry for stream\(s\) \['parallel'\]"):
        tiny_datamodule(tiny_model, tiny_data, weights={"english": 1, "translated": 1})
    # an explicit 0 leaves it out on purpose
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, weights={"english": 1, "translated": 1, "parallel": 0}
    )
    datamodule.setup("fit")
    assert datamodule.counts[2] == 0 and datamodule.counts[0] > 0


def test_a_weighted_stream_planned_at_zero_examples_is_an_error(tiny_model, tiny_data):
    datamodule = tiny_datamodule(
        tiny_model,
        tiny_data,
        weights={"english": 1, "translated": 1, "parallel": 0.001},
        examples_per_epoch=100,
    )
    with pytest.raises(ValueError, match=r"\['parallel'\] have a positive weight but get 0"):
        datamodule.setup("fit")


def test_the_data_report_and_the_warnings_name_repeats_and_unseen_shares(
    tiny_model, tiny_data, tmp_path
):
    datamodule = tiny_datamodule(
        tiny_model,
        tiny_data,
        weights={"english": 6, "translated": 1, "parallel": 0.2},
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.warns(UserWarning) as warned:
        datamodule.setup("fit")
    messages = [str(w.message) for w in warned]
    assert any(m.startswith("stream english: each example is seen about") for m in messages)
    assert any(m.startswith("stream parallel: ") and "left unseen" in m for m in messages)
    report = datamodule.data_report()
    streams = {s["name"]: s for s in report["streams"]}
    english, parallel = streams["english"], streams["parallel"]
    assert english["epoch_examples"] == datamodule.counts[0]
    assert english["passes_per_epoch"] == pytest.approx(
        english["epoch_examples"] / english["pass_examples"], abs=1e-4
    )
    assert english["passes_per_epoch"] > 2 and parallel["passes_per_epoch"] < 0.5
    text = data_report_text(report, {"token": "<unk>", "id": 0, "reason": "the unk token"})
    assert text.splitlines()[0].startswith("data report")
    assert text.splitlines()[2].split()[0] == "english"  # one row per stream, after the header
    assert "padding with '<unk>' (id 0)" in text


def test_without_weights_an_epoch_trains_on_every_example_once(tiny_model, tiny_data, tmp_path):
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, weights=None, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup("fit")
    assert datamodule.stop_rule == "all_exhausted_without_replacement"
    assert datamodule.counts == [reader.size for reader in datamodule.readers]
    assert datamodule.data_plan()["stop"] == "all_exhausted_without_replacement"


def test_predict_skips_and_counts_empty_lines(tiny_model, tiny_data, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("the dog sees a cat.\n\n   \nthe king holds a cup.\n")
    datamodule = tiny_datamodule(
        tiny_model,
        tiny_data,
        predict_file=str(sentences),
        predict_direction="en-syn_far",
    )
    with pytest.warns(UserWarning, match=r"2 empty line\(s\) skipped.*line 2, 3"):
        datamodule.setup("predict")
    assert [(r["id"], r["input"]) for r in datamodule.predict_set] == [
        (0, "the dog sees a cat."),
        (3, "the king holds a cup."),
    ]
