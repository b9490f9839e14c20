"""``evaluate --paper.languages ...``: the paper's benchmarks built for a list of languages and
their table written as markdown and JSON, with the metric signatures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_xllama.commands.main import main
from lightning_xllama.commands.paper_table import PaperBenchmarks, paper_table

SENTENCES = {
    "eng": ["the dog sees a cat.", "a bird finds the tree.", "the king holds a cup."],
    "zho_simpl": ["狗看见一只猫。", "一只鸟找到了树。", "国王拿着一个杯子。"],
    "ron": ["câinele vede o pisică.", "o pasăre găsește copacul.", "regele ține o cană."],
}


def squad_file(path: Path, context: str, question: str, answer: str) -> Path:
    start = context.index(answer)
    article = {
        "title": "t",
        "paragraphs": [
            {
                "context": context,
                "qas": [
                    {
                        "id": "q1",
                        "question": question,
                        "answers": [{"text": answer, "answer_start": start}],
                    }
                ],
            }
        ],
    }
    path.write_text(json.dumps({"version": "1.1", "data": [article]}, ensure_ascii=False))
    return path


def test_the_paper_table_has_a_row_per_language_and_the_signatures(tiny_model, tmp_path):
    flores = tmp_path / "flores101_dataset" / "devtest"
    flores.mkdir(parents=True)
    for code, lines in SENTENCES.items():
        (flores / f"{code}.devtest").write_text("\n".join(lines) + "\n")
    xquad = tmp_path / "xquad"
    xquad.mkdir()
    squad_file(xquad / "xquad.zh.json", "北京是中国的首都。", "中国的首都是哪里？", "北京")
    squad_file(
        xquad / "xquad.ro.json", "Bucureşti este capitala.", "Care este capitala?", "Bucureşti"
    )
    out = tmp_path / "report"
    main(
        [
            "evaluate",
            "--model",
            tiny_model,
            "--output_dir",
            str(out),
            "--paper.languages",
            "[zh, ro]",
            "--paper.flores_dir",
            str(tmp_path / "flores101_dataset"),
            "--paper.xquad_dir",
            str(xquad),
            "--paper.batch_size",
            "3",
            "--paper.flores_max_new_tokens",
            "16",
        ]
    )
    table = json.loads((out / "paper_table.json").read_text())
    assert [row["language"] for row in table["rows"]] == ["zh", "ro"]
    assert table["columns"][:2] == ["en-x BLEU", "en-x off-target %"]  # no COMET model given
    for row in table["rows"]:
        assert {"en-x BLEU", "x-en BLEU", "XQuAD paper match", "XQuAD EM", "XQuAD F1"} <= set(row)
    assert "MLQA EM" not in table["columns"]  # no MLQA folder: no column
    assert "flores/en-zh" in table["signatures"]
    assert table["signatures"]["flores/en-zh"]["bleu_signature"].startswith("nrefs:1")
    markdown = (out / "paper_table.md").read_text()
    assert "| zh |" in markdown and "| ro |" in markdown and "bleu_signature" in markdown


def test_paper_benchmarks_check_their_settings():
    with pytest.raises(ValueError, match="at least one language"):
        PaperBenchmarks(languages=[], flores_dir="f")
    with pytest.raises(ValueError, match="at least one of flores_dir"):
        PaperBenchmarks(languages=["zh"])
    with pytest.raises(ValueError, match="judge needs"):
        PaperBenchmarks(languages=["zh"], flores_dir="f", judge_base_url="http://127.0.0.1:1")
    with pytest.raises(KeyError):
        PaperBenchmarks(languages=["xx"], flores_dir="f")


def test_the_table_takes_each_column_from_its_evaluation():
    report = {
        "model": "m",
        "metrics": {
            "flores/en-zh/comet": 0.81,
            "flores/en-zh/bleu": 30.0,
            "mlqa/mlqa-zh/paper_match": 55.0,
            "judge/zh/win_rate": 62.5,
        },
        "details": {"flores": {"en-zh": {"comet_signature": "model:wmt22-comet-da"}}},
    }
    table = paper_table(report, ["zh"])
    assert table["columns"] == ["en-x COMET", "en-x BLEU", "MLQA paper match", "judge win rate %"]
    assert table["rows"][0]["judge win rate %"] == 62.5
    assert table["signatures"] == {"flores/en-zh": {"comet_signature": "model:wmt22-comet-da"}}
