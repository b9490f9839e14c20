"""Input files as users really bring them: a stray non-UTF-8 byte, a byte-order mark written by
an editor, repeated pairs, a model folder saved without its tokenizer. Each must be named
plainly (file, line, what was expected) or counted and reported, never left in silently."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from lightning_xllama.data.index import build_index, load_index
from lightning_xllama.data.kinds import JsonInstructions, JsonlInstructions
from lightning_xllama.data.sources import (
    AlignedText,
    DataFormatError,
    TsvPairs,
    read_instructions,
    read_parallel,
)
from lightning_xllama.runtime.hf_loading import load_tokenizer

BOM = "\ufeff".encode()


# --- 1. a non-UTF-8 byte: file, line, column and what was expected ----------------------------
def test_bad_byte_in_a_json_list_names_file_line_and_column(tmp_path):
    path = tmp_path / "alpaca.json"
    good = json.dumps([{"instruction": "a", "output": "b"}], indent=1).encode()
    # line 3 is `  "instruction": "a",`: a Latin-1 é before the a, at column 19
    path.write_bytes(good.replace(b'"a"', b'"\xe9a"'))
    expected = r"alpaca\.json:3: not valid UTF-8 at column 19 \(byte 0xe9.*expected UTF-8"
    with pytest.raises(DataFormatError, match=expected):
        list(read_instructions(path))
    with pytest.raises(DataFormatError, match=expected):  # the training source, when indexed
        build_index(JsonInstructions(path), "instructions", "en")


def test_bad_byte_in_jsonl_names_file_line_and_column(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_bytes(
        b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "d"}\n'
    )
    expected = r"alpaca\.jsonl:2: not valid UTF-8 at column 21 \(byte 0xe9.*expected UTF-8"
    with pytest.raises(DataFormatError, match=expected):
        list(read_instructions(path))
    with pytest.raises(DataFormatError, match=expected):
        build_index(JsonlInstructions(path), "instructions", "en")


def test_bad_byte_column_counts_characters_not_bytes(tmp_path):
    (tmp_path / "c.en").write_text("fine\nok\n")
    (tmp_path / "c.zh").write_bytes("好\n".encode() + "中文".encode() + b"\xff\n")
    with pytest.raises(DataFormatError, match=r"c\.zh:2: not valid UTF-8 at column 3 \(byte 0xff"):
        read_parallel(tmp_path / "c", "en", "zh")


# --- 2. a byte-order mark at the start of a file ----------------------------------------------
def _pairs_with_boms(tmp_path, lines: int = 600):
    prefix = tmp_path / "train"
    (tmp_path / "train.en").write_bytes(
        BOM + "".join(f"sentence {i}\n" for i in range(lines)).encode()
    )
    (tmp_path / "train.zh").write_bytes(BOM + "".join(f"句子 {i}\n" for i in range(lines)).encode())
    return prefix


def test_read_parallel_strips_a_byte_order_mark(tmp_path, caplog):
    prefix = _pairs_with_boms(tmp_path, lines=3)
    with caplog.at_level(logging.INFO, logger="lightning_xllama.data.sources"):
        pairs = read_parallel(prefix, "en", "zh")
    assert pairs[0] == ("sentence 0", "句子 0")
    assert "train.en: stripped the UTF-8 byte-order mark" in caplog.text


def test_indexed_parallel_source_strips_a_byte_order_mark_and_counts_it(tmp_path):
    prefix = _pairs_with_boms(tmp_path)
    source = AlignedText(prefix, "zh")
    first = next(iter(source.scan()))[1]
    assert first == ("sentence 0", "句子 0")
    index = load_index(source, "parallel", "zh", cache_dir=str(tmp_path / "cache"))
    assert index.chunks == 3 and index.usable_units == 600 and not index.skipped
    assert index.byte_order_marks == [str(tmp_path / "train.en"), str(tmp_path / "train.zh")]
    assert any("byte-order mark" in note for note in index.notes())
    # reading by the index's byte offsets: the first chunk starts at 0, where the mark is
    assert source.read(tuple(index.offsets[0]), 2) == [
        ("sentence 0", "句子 0"),
        ("sentence 1", "句子 1"),
    ]
    assert source.read(tuple(index.offsets[1]), 1) == [("sentence 256", "句子 256")]
    cached = load_index(source, "parallel", "zh", cache_dir=str(tmp_path / "cache"))
    assert cached.byte_order_marks == index.byte_order_marks  # kept in the cached index


@pytest.mark.parametrize("suffix", ["json", "jsonl", "tsv"])
def test_other_sources_strip_a_byte_order_mark(tmp_path, suffix):
    records = [("hello", "", "你好"), ("bye", "", "再见")]
    path = tmp_path / f"data.{suffix}"
    if suffix == "json":
        body = json.dumps([dict(zip(("instruction", "input", "output"), r)) for r in records])
        kind, expected = "instructions", records
    elif suffix == "jsonl":
        body = "".join(
            json.dumps(dict(zip(("instruction", "input", "output"), r))) + "\n" for r in records
        )
        kind, expected = "instructions", records
    else:
        body = "".join(f"1.5\t{r[0]}\t{r[2]}\n" for r in records)
        kind, expected = "parallel", [(r[0], r[2], "1.5") for r in records]
    path.write_bytes(BOM + body.encode())
    source = {"json": JsonInstructions, "jsonl": JsonlInstructions, "tsv": TsvPairs}[suffix](path)
    index = build_index(source, kind, "zh", min_score=1.0 if suffix == "tsv" else None)
    assert index.usable_units == 2 and index.byte_order_marks == [str(path)]
    assert source.read(tuple(index.offsets[0]), 2) == expected
    if suffix != "tsv":
        assert next(read_instructions(path)).instruction == "hello"


# --- 3. duplicates without dedupe: counted, with the setting that removes them ----------------
def test_duplicates_without_dedupe_are_counted_and_named_with_a_hint(tmp_path, caplog):
    (tmp_path / "train.en").write_text("a\nb\na\nc\na\nb\n")
    (tmp_path / "train.zh").write_text("一\n二\n一\n三\n一\n二\n")
    source = AlignedText(tmp_path / "train", "zh")
    with caplog.at_level(logging.WARNING, logger="lightning_xllama.data.index"):
        index = load_index(
            source, "parallel", "zh", cache_dir=str(tmp_path / "cache"), label="parallel:zh"
        )
    assert index.usable_units == 6 and not index.skipped  # kept: dedupe is off
    assert index.duplicates == 3
    assert index.duplicates_at == [f"{tmp_path}/train.en:{n} / train.zh:{n}" for n in (3, 5, 6)]
    assert "parallel:zh: 3 exact duplicate(s) kept" in caplog.text
    assert "dedupe: true" in caplog.text and "dedupe: true" in index.notes()[0]
    cached = load_index(source, "parallel", "zh", cache_dir=str(tmp_path / "cache"))
    assert (cached.duplicates, cached.duplicates_at) == (3, index.duplicates_at)
    deduped = build_index(source, "parallel", "zh", dedupe=True)
    assert deduped.duplicates == 0 and deduped.skipped == {"duplicate": 3}
    assert deduped.notes() == []


def test_a_pair_that_differs_only_in_the_other_side_is_not_a_duplicate(tmp_path):
    (tmp_path / "train.en").write_text("a\na\n")
    (tmp_path / "train.zh").write_text("一\n二\n")
    index = build_index(AlignedText(tmp_path / "train", "zh"), "parallel", "zh")
    assert index.duplicates == 0 and index.notes() == []


# --- 4. a model folder without its tokenizer --------------------------------------------------
def test_model_folder_without_tokenizer_names_the_folder_and_the_missing_files(
    tiny_model, tmp_path
):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "weights_only"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model)).save_pretrained(folder)
    with pytest.raises(FileNotFoundError) as error:
        load_tokenizer(str(folder))
    message = str(error.value)
    assert "no tokenizer files (tokenizer.json, tokenizer.model, tokenizer_config.json" in message
    assert f"in {folder}" in message and "config.json" in message  # what the folder does hold
    assert "model_file or model_proto" not in message


def test_tokenizer_config_without_its_vocabulary_names_the_folder(tiny_model, tmp_path):
    folder = tmp_path / "half_tokenizer"
    folder.mkdir()
    shutil.copy(f"{tiny_model}/tokenizer_config.json", folder)
    shutil.copy(f"{tiny_model}/config.json", folder)
    with pytest.raises(ValueError, match=rf"could not load a tokenizer from {folder} \(it holds"):
        load_tokenizer(str(folder))
