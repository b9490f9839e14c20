"""Bad data and evaluation settings fail when the classes are built, in one line naming the class,
the setting, what was expected and what was given; a data path naming a folder where a file is
expected is called a folder, with what it should name and what in the folder would do."""

from __future__ import annotations

import pytest
from training_utils import tiny_datamodule

from lightning_xllama.callbacks import QAEvaluation, TranslationEvaluation
from lightning_xllama.data import MuITDataModule
from lightning_xllama.data.kinds import JsonlInstructions
from lightning_xllama.data.sources import AlignedText, read_instructions
from lightning_xllama.data.streams import Stream
from lightning_xllama.demo.layout import DataLayout


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        ("val_examples_per_stream", -1, ">= 0 or None"),
        ("group_batches", 0, ">= 1"),
        ("eval_batch_size", 0, ">= 1 or None"),
        ("batch_size", 0, ">= 1"),
        ("max_length", 1, ">= 2"),
        ("pad_to_multiple_of", 0, ">= 1"),
        ("num_workers", -1, ">= 0"),
        ("shuffle_window", 0, ">= 1"),
        ("examples_per_epoch", 0, ">= 1 or None"),
        ("group_batches", 2.5, ">= 1"),
    ],
)
def test_a_data_setting_out_of_range_fails_at_construction_in_one_line(
    tiny_model, tiny_data, setting, value, expected
):
    with pytest.raises(ValueError) as raised:
        tiny_datamodule(tiny_model, tiny_data, **{setting: value})
    assert str(raised.value) == (
        f"CoITDataModule: {setting} must be a whole number {expected}, got {value!r}"
    )


def test_the_range_check_names_the_class_built(tiny_data):
    stream = Stream("instructions", "en", str(DataLayout(tiny_data).instructions("en")))
    with pytest.raises(ValueError, match=r"^MuITDataModule: val_examples_per_stream must be"):
        MuITDataModule([stream], val_examples_per_stream=-3)


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        ("batch_size", 0, ">= 1"),
        ("max_new_tokens", 0, ">= 1"),
        ("num_beams", 0, ">= 1"),
        ("max_samples", 0, ">= 1 or None"),
        ("table_rows", -1, ">= 0"),
        ("every_n_validations", 0, ">= 1"),
    ],
)
def test_a_generation_setting_out_of_range_fails_at_construction_in_one_line(
    tiny_data, setting, value, expected
):
    layout = DataLayout(tiny_data)
    message = rf"must be a whole number {expected}, got {value!r}$"
    with pytest.raises(ValueError, match=rf"^TranslationEvaluation: {setting} {message}"):
        TranslationEvaluation(
            ["en-syn_far"], str(layout.translation_test_dir("syn_far") / "test"), **{setting: value}
        )
    with pytest.raises(ValueError, match=rf"^QAEvaluation: {setting} {message}"):
        QAEvaluation(files={"syn_far": "qa.json"}, **{setting: value})


# --- a folder where a file is expected ----------------------------------------------------------
def test_a_folder_given_for_an_instruction_file_is_named_as_a_folder(tiny_model, tiny_data):
    folder = DataLayout(tiny_data).instructions("en").parent
    with pytest.raises(ValueError) as raised:
        tiny_datamodule(tiny_model, tiny_data, english_instructions=str(folder))
    message = str(raised.value)
    assert message.startswith(f"stream english: {folder} is a folder: expected a .json")
    assert "Alpaca records" in message and f"in it: {folder / 'en.json'}" in message
    assert "\n" not in message


def test_a_folder_given_for_a_parallel_prefix_is_named_with_the_prefixes_it_holds(
    tiny_model, tiny_data
):
    folder = DataLayout(tiny_data).parallel_dir("syn_far")
    with pytest.raises(ValueError) as raised:
        tiny_datamodule(tiny_model, tiny_data, parallel=str(folder))
    message = str(raised.value)
    assert message.startswith(f"stream parallel: {folder} is a folder: expected an aligned-text")
    assert f"{folder}.en and {folder}.syn_far" in message
    assert f"in it: {folder / 'train'}" in message


def test_a_folder_is_named_as_such_by_the_readers_too(tmp_path):
    (tmp_path / "records.jsonl").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"records\.jsonl is a folder, not a file: expected"
    ):
        JsonlInstructions(tmp_path / "records.jsonl")
    with pytest.raises(FileNotFoundError, match="is a folder, not a file: expected a .json"):
        list(read_instructions(tmp_path / "records.jsonl"))
    (tmp_path / "corpus").mkdir()
    with pytest.raises(FileNotFoundError, match=r"corpus is a folder: expected an aligned-text"):
        AlignedText(tmp_path / "corpus", "zh")
    # a prefix may share its name with a folder: its files exist, so it is read
    (tmp_path / "corpus.en").write_text("a cat\n")
    (tmp_path / "corpus.zh").write_text("一只猫\n")
    assert AlignedText(tmp_path / "corpus", "zh").paths[0] == tmp_path / "corpus.en"
