"""Readers, templating, masking, mixing and the synthetic world."""

from __future__ import annotations

import json
import random

import pytest

from lightning_xllama.data.encoding import IGNORE_INDEX, EncodingReport, encode_example
from lightning_xllama.data.mixing import deal, epoch_counts, shard_order, stream_counts
from lightning_xllama.data.sources import (
    DataFormatError,
    Example,
    read_instructions,
    read_parallel,
)
from lightning_xllama.data.tasks import pair_examples
from lightning_xllama.demo.world import SyntheticWorld, render
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import TRANSLATION_INSTRUCTIONS, alpaca_prompt
from lightning_xllama.runtime.hf_loading import load_tokenizer


# --- prompt masking ---------------------------------------------------------------------
def test_prompt_tokens_are_masked_and_response_ends_with_eos(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    example = Example("what is the subject of this sentence?", "the dog sees a cat.", "the dog")
    encoded = encode_example(tokenizer, example, max_length=512)
    prompt = tokenizer(alpaca_prompt(example.instruction, example.input))["input_ids"]
    response = tokenizer(example.output, add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"] == prompt + response + [tokenizer.eos_token_id]
    assert encoded["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert encoded["labels"][len(prompt) :] == response + [tokenizer.eos_token_id]
    assert IGNORE_INDEX not in encoded["labels"][len(prompt) :]


def test_over_long_examples_are_truncated_or_dropped_and_counted(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    example = Example(
        "rewrite this sentence.", "the dog sees a cat.", "the cat sees the dog near a big house."
    )
    prompt_length = len(tokenizer(alpaca_prompt(example.instruction, example.input))["input_ids"])
    report = EncodingReport()
    truncated = encode_example(tokenizer, example, prompt_length + 2, "truncate", report)
    assert len(truncated["input_ids"]) == prompt_length + 2 and report.truncated == 1
    assert encode_example(tokenizer, example, prompt_length + 2, "drop", report) is None
    assert encode_example(tokenizer, example, prompt_length, "truncate", report) is None
    assert report.dropped == {"longer than max_length": 1, "prompt alone reaches max_length": 1}
    assert "1 truncated" in report.summary()


# --- readers: bad input is named ----------------------------------------------------------
def test_parallel_files_of_different_lengths_are_refused(tmp_path):
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.zh").write_text("甲\n乙\n")
    with pytest.raises(DataFormatError, match=r"train\.en has 3 lines, .*train\.zh has 2"):
        read_parallel(tmp_path / "train", "en", "zh")


def test_empty_parallel_files_and_empty_lines_are_refused(tmp_path):
    (tmp_path / "a.en").write_text("")
    (tmp_path / "a.zh").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        read_parallel(tmp_path / "a", "en", "zh")
    (tmp_path / "b.en").write_text("one\n\n")
    (tmp_path / "b.zh").write_text("一\n二\n")
    with pytest.raises(DataFormatError, match=r"b\.en:2: empty line"):
        read_parallel(tmp_path / "b", "en", "zh")


def test_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "c.en").write_bytes(b"fine\nbad \xff byte\n")
    (tmp_path / "c.zh").write_text("好\n坏\n")
    with pytest.raises(DataFormatError, match=r"c\.en:2: not valid UTF-8"):
        read_parallel(tmp_path / "c", "en", "zh")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"instruction": "x", "output": "y"', r"data\.jsonl:2: invalid JSON"),
        ('{"instruction": "x"}', r"data\.jsonl:2: missing field 'output'"),
        (
            '{"instruction": "x", "output": 3}',
            r"data\.jsonl:2: field 'output' must be a string, got int",
        ),
        ('["x", "y"]', r"data\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_jsonl_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text('{"instruction": "ok", "input": "", "output": "fine"}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=message):
        list(read_instructions(path))


def test_alpaca_json_list_errors_name_the_record(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(
        json.dumps(
            [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": 5, "output": "d"}]
        )
    )
    with pytest.raises(
        DataFormatError, match=r"alpaca\.json: record 1: field 'input' must be a string"
    ):
        list(read_instructions(path))
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataFormatError, match="non-empty JSON list"):
        list(read_instructions(tmp_path / "empty.json"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="empty file"):
        list(read_instructions(tmp_path / "empty.jsonl"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        list(read_instructions(tmp_path / "nope.json"))


def test_unknown_language_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown language code 'xx'.*known codes: .*zh"):
        get_language("xx")
    with pytest.raises(KeyError, match="unknown language code 'xx'"):
        pair_examples("a", "b", "en", "xx", "en-x", random.Random(0))


# --- translation instructions ---------------------------------------------------------------
def test_translation_instructions_rotate_deterministically_in_both_directions():
    assert len(TRANSLATION_INSTRUCTIONS) >= 20

    def examples(seed, direction="both"):
        return [
            e
            for i in range(60)
            for e in pair_examples(
                f"sentence {i}", f"phrase {i}", "en", "zh", direction, random.Random(f"{seed}:{i}")
            )
        ]

    both = examples(3)
    assert len(both) == 120
    assert both[0].input == "sentence 0" and both[0].output == "phrase 0" and both[0].lang == "zh"
    assert both[1].input == "phrase 0" and both[1].output == "sentence 0" and both[1].lang == "en"
    assert "English" in both[0].instruction and "Chinese" in both[0].instruction
    assert len({e.instruction for e in both[::2]}) > 10  # paraphrases rotate
    assert both == examples(3)
    assert both != examples(4)
    assert [e.output for e in examples(3, "x-en")] == [f"sentence {i}" for i in range(60)]
    with pytest.raises(ValueError, match="direction must be"):
        examples(3, "en-zh")


# --- mixing -------------------------------------------------------------------------------
def test_stream_counts_follow_weights_and_sum_to_total():
    assert stream_counts([100, 100, 100], [1, 1, 2], 100) == [25, 25, 50]
    assert sum(stream_counts([7, 9, 11], [1, 2, 3], 10)) == 10
    with pytest.raises(ValueError, match="weights"):
        stream_counts([1, 2], [0, 0], 3)


def test_stop_rules_say_which_streams_are_oversampled():
    sizes, weights = [100, 10], [1.0, 1.0]
    assert epoch_counts(sizes, weights, "first_exhausted") == [10, 10]  # nothing repeats
    assert epoch_counts(sizes, weights, "all_exhausted") == [100, 100]  # the small stream 10 times
    assert epoch_counts(sizes, weights, "all_exhausted_without_replacement") == [
        100,
        10,
    ]  # each once
    assert epoch_counts(sizes, weights, "total") == [55, 55]  # default total: the sizes summed
    assert epoch_counts(sizes, [3.0, 1.0], "total", total=40) == [30, 10]
    assert epoch_counts([100, 10, 50], [1.0, 0.0, 1.0], "all_exhausted_without_replacement") == [
        100,
        0,
        50,
    ]
    with pytest.raises(ValueError, match="stop must be one of"):
        epoch_counts(sizes, weights, "longest")


def test_deal_gives_every_shard_the_same_total_and_each_stream_its_share():
    dealt = deal([100, 50, 25], 7)
    assert dealt.sum(axis=0).tolist() == [25] * 7  # every shard runs as many steps
    assert dealt.sum(axis=1).tolist() == [100, 50, 25]  # 175 = 7 * 25: nothing repeated
    assert (dealt.max(axis=1) - dealt.min(axis=1)).max() <= 1  # streams split evenly
    padded = deal([3, 2], 2)
    assert padded.sum(axis=0).tolist() == [3, 3] and padded.sum() == 6  # one example repeated
    order = shard_order([3, 2], seed=1, epoch=0, shard=0)
    assert sorted(order.tolist()) == [0, 0, 0, 1, 1]
    assert order.tolist() == shard_order([3, 2], seed=1, epoch=0, shard=0).tolist()
    assert any(
        shard_order([30, 20], 1, epoch, 0).tolist() != shard_order([30, 20], 1, 0, 0).tolist()
        for epoch in (1, 2)
    )


# --- the synthetic world ------------------------------------------------------------------
def test_synthetic_world_is_deterministic_for_a_seed(tmp_path):
    a = SyntheticWorld(["syn_near", "syn_far"], seed=5).write(tmp_path / "a", 200, 30, 40, 10, 5)
    SyntheticWorld(["syn_near", "syn_far"], seed=5).write(tmp_path / "b", 200, 30, 40, 10, 5)
    SyntheticWorld(["syn_near", "syn_far"], seed=6).write(tmp_path / "c", 200, 30, 40, 10, 5)
    files_a = sorted(p for p in tmp_path.joinpath("a").rglob("*") if p.is_file())
    assert len(files_a) == len(a) + 4  # parallel and test folders hold two files each
    for path in files_a:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes(), path
    assert (tmp_path / "a" / "pretraining.txt").read_text() != (
        tmp_path / "c" / "pretraining.txt"
    ).read_text()


def test_translated_instructions_correspond_to_the_english_ones():
    world = SyntheticWorld(["syn_far"], seed=0)
    english, farish = world.instructions(50, "en"), world.instructions(50, "syn_far")
    renderer = world.renderer("syn_far")
    for en, far in zip(english, farish):
        # instructions are word-for-word; inputs have the same words in another order
        tokens = en["instruction"].replace("?", " ?").replace(".", " .").split()
        assert far["instruction"] == render(renderer.words(tokens))
        en_words = en["input"].rstrip(".").split()
        far_words = far["input"].rstrip(".").split()
        assert sorted(renderer.lexicon[w] for w in en_words) == sorted(far_words)
        if en["instruction"].startswith("how many"):
            assert far["output"] == renderer.lexicon[en["output"]]


def test_parallel_training_pairs_never_include_test_sentences():
    world = SyntheticWorld(["syn_near"], seed=0)
    test = {en for en, _ in world.translation_test("syn_near", 200)}
    train = {en for en, _ in world.parallel("syn_near", 2000)}
    assert test and train and not (test & train)


def test_synthetic_qa_answers_are_spans_of_their_context():
    data = SyntheticWorld(["syn_far"], seed=0).qa("syn_far", 30)
    for paragraph in data["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            answer = qa["answers"][0]
            assert paragraph["context"][answer["answer_start"] :].startswith(answer["text"])


def test_importing_the_data_package_loads_neither_scipy_nor_matplotlib():
    """Allocation files are read without the fitting stack (lightning_xllama.scaling)."""
    import subprocess
    import sys

    code = (
        "import lightning_xllama.data, lightning_xllama.data.allocation, sys; "
        "assert 'scipy' not in sys.modules and 'matplotlib' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'matplotlib'))[:5]"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    # the DataModule itself needs Lightning (which loads scipy), but not the scaling package
    code = "import lightning_xllama.data.datamodule, sys; assert 'lightning_xllama.scaling' not in sys.modules"
    subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
