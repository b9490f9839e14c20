"""Readers of evaluation sets: FLORES layouts and SQuAD-format QA (XQuAD, MLQA, your own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_xllama.data.eval_sets import (
    flores_file,
    mlqa_file,
    parse_direction,
    read_flores,
    read_squad,
    read_test_pairs,
    xquad_file,
)
from lightning_xllama.data.sources import DataFormatError

SHARED = Path("/work/shared/data")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_flores_release_and_flat_layouts(tmp_path):
    write(tmp_path / "release" / "devtest" / "eng.devtest", "One.\nTwo.\n")
    write(tmp_path / "release" / "devtest" / "zho_simpl.devtest", "一。\n二。\n")
    write(tmp_path / "release" / "dev" / "eng.dev", "Dev.\n")
    write(tmp_path / "release" / "dev" / "zho_simpl.dev", "开发。\n")
    assert read_flores(tmp_path / "release", "en", "zh") == [("One.", "一。"), ("Two.", "二。")]
    assert read_flores(tmp_path / "release", "zh", "en", split="dev") == [("开发。", "Dev.")]
    write(tmp_path / "flat" / "eng_Latn.devtest", "One.\n")
    write(tmp_path / "flat" / "arb_Arab.devtest", "واحد.\n")
    assert read_flores(tmp_path / "flat", "en", "ar", version="flores200") == [("One.", "واحد.")]
    write(tmp_path / "flat" / "eng.devtest", "One.\n")
    with pytest.raises(FileNotFoundError, match=r"ara\.devtest"):  # FLORES-101's Arabic code
        read_flores(tmp_path / "flat", "en", "ar")


def test_flores_problems_name_the_file(tmp_path):
    write(tmp_path / "eng.devtest", "One.\nTwo.\n")
    write(tmp_path / "deu.devtest", "Eins.\n")
    with pytest.raises(DataFormatError, match=r"eng\.devtest has 2 lines, .*deu\.devtest has 1"):
        read_flores(tmp_path, "en", "de")
    write(tmp_path / "deu.devtest", "Eins.\n \n")
    with pytest.raises(DataFormatError, match=r"deu\.devtest:2: empty line"):
        read_flores(tmp_path, "en", "de")
    with pytest.raises(FileNotFoundError, match=r"devtest/spa\.devtest and .*spa\.devtest"):
        flores_file(tmp_path, "es")
    with pytest.raises(ValueError, match="syn_far.*no flores101 code"):
        read_flores(tmp_path, "en", "syn_far")


def test_test_pairs_come_from_exactly_one_source(tmp_path):
    write(tmp_path / "test.en", "a b.\n")
    write(tmp_path / "test.syn_far", "c d.\n")
    assert read_test_pairs("en", "syn_far", test_prefix=str(tmp_path / "test")) == [
        ("a b.", "c d.")
    ]
    with pytest.raises(ValueError, match="exactly one"):
        read_test_pairs("en", "syn_far")
    with pytest.raises(ValueError, match="exactly one"):
        read_test_pairs("en", "zh", test_prefix="x", flores_dir="y")
    with pytest.raises(FileNotFoundError, match=r"test\.zh"):
        read_test_pairs("en", "zh", test_prefix=str(tmp_path / "test"))


def test_direction_parsing():
    assert parse_direction("en-syn_far") == ("en", "syn_far")
    for bad in ("en", "en-", "-zh"):
        with pytest.raises(ValueError, match="src-tgt"):
            parse_direction(bad)
    with pytest.raises(KeyError, match="xx"):
        parse_direction("en-xx")


def squad(*paragraphs) -> dict:
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": list(paragraphs)}]}


def test_squad_reader_strips_the_bom_and_keeps_every_answer(tmp_path):
    paragraph = {
        "context": "\ufeffParis is the capital of France.",
        "qas": [
            {
                "id": "q1",
                "question": "\ufeffWhat is the capital?",
                "answers": [
                    {"text": "Paris", "answer_start": 0},
                    {"text": "Paris", "answer_start": 0},
                ],
            }
        ],
    }
    path = write(tmp_path / "qa.json", json.dumps(squad(paragraph)))
    [example] = read_squad(path, "en")
    assert example.context == "Paris is the capital of France."
    assert example.question == "What is the capital?"
    assert example.answers == ("Paris", "Paris") and example.id == "q1" and example.lang == "en"


def one_question(**fields) -> dict:
    return squad({"context": "c", "qas": [{"id": "q7", "question": "q?", **fields}]})


@pytest.mark.parametrize(
    "document, message",
    [
        (
            {"data": [{"paragraphs": [{"qas": []}]}]},
            r"data\[0\]\.paragraphs\[0\]: missing field 'context'",
        ),
        (one_question(), r"qas\[0\] \(id q7\): missing field 'answers'"),
        (one_question(answers=[]), r"\(id q7\): no gold answers"),
        (one_question(question=3, answers=[{"text": "a"}]), "'question' must be a str"),
        (one_question(answers=[{"start": 1}]), r"answers\[0\]: missing field 'text'"),
        ({"data": []}, "no questions found"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_squad_errors_name_file_and_record(tmp_path, document, message):
    path = write(tmp_path / "bad.json", json.dumps(document))
    with pytest.raises(DataFormatError, match=message) as error:
        read_squad(path, "en")
    assert "bad.json" in str(error.value)


def test_squad_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path / "broken.json", '{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(DataFormatError, match=r"broken\.json:2: invalid JSON"):
        read_squad(path, "en")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_squad(tmp_path / "missing.json", "en")


def test_xquad_and_mlqa_file_names(tmp_path):
    write(tmp_path / "xquad" / "xquad.zh.json", "{}")
    assert xquad_file(tmp_path / "xquad", "zh").name == "xquad.zh.json"
    with pytest.raises(FileNotFoundError, match=r"xquad\.ar\.json"):
        xquad_file(tmp_path / "xquad", "ar")
    write(tmp_path / "MLQA_V1" / "test" / "test-context-de-question-de.json", "{}")
    write(tmp_path / "flat" / "dev-context-es-question-es.json", "{}")
    assert mlqa_file(tmp_path / "MLQA_V1", "de", "de").parent.name == "test"
    assert (
        mlqa_file(tmp_path / "flat", "es", "es", split="dev").name
        == "dev-context-es-question-es.json"
    )
    with pytest.raises(FileNotFoundError, match="dev-context-de-question-de.json"):
        mlqa_file(tmp_path / "MLQA_V1", "de", "de", split="dev")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real data is not on this machine")
def test_real_xquad_and_flores():
    english = read_squad(xquad_file(SHARED / "xquad", "en"), "en")
    chinese = read_squad(xquad_file(SHARED / "xquad", "zh"), "zh")
    assert len(english) == len(chinese) == 1190
    assert [e.id for e in english] == [e.id for e in chinese]
    assert not any(
        e.context.startswith("\ufeff") or e.question.startswith("\ufeff") for e in chinese + english
    )
    assert all(answer in e.context for e in chinese for answer in e.answers)
    pairs = read_flores(SHARED / "flores101-devtest", "en", "zh")
    assert len(pairs) == 1012 and all(src and tgt for src, tgt in pairs)
