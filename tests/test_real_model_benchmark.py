"""benchmarks/real_model.py without the real model: the FLORES/XQuAD split it writes, and its
table and claim-1 verdict on made-up scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import real_model  # noqa: E402


def fake_data(root: Path) -> Path:
    flores = root / "flores101-devtest"
    flores.mkdir(parents=True)
    for code in ("eng", "deu"):
        lines = [f"{code} sentence {i}" for i in range(1, 1013)]
        (flores / f"{code}.devtest").write_text("\n".join(lines) + "\n", encoding="utf-8")
    paragraphs = [
        {
            "context": f"context {p}",
            "qas": [{"id": f"{p}-{q}", "question": "?", "answers": []} for q in range(3)],
        }
        for p in range(4)
    ]
    squad = {
        "version": "1.1",
        "data": [
            {"title": "a", "paragraphs": paragraphs[:2]},
            {"title": "b", "paragraphs": paragraphs[2:]},
        ],
    }
    (root / "xquad").mkdir()
    (root / "xquad" / "xquad.de.json").write_text(json.dumps(squad), encoding="utf-8")
    (root / "real").mkdir()
    (root / real_model.INSTRUCTIONS).write_text(
        json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}] * 20)
    )
    return root


def test_lines_1_to_800_train_and_801_to_1012_test_and_the_first_questions(tmp_path):
    paths = real_model.write_data(fake_data(tmp_path / "data"), tmp_path / "out", "de", 7)
    train_de = Path(paths["train"] + ".de").read_text().splitlines()
    test_en = Path(paths["test"] + ".en").read_text().splitlines()
    assert len(train_de) == 800 and train_de[0] == "deu sentence 1"
    assert train_de[-1] == "deu sentence 800"
    assert len(test_en) == 212 and test_en[0] == "eng sentence 801"
    assert test_en[-1] == "eng sentence 1012"
    squad = json.loads((Path(paths["xquad_dir"]) / "xquad.de.json").read_text())
    ids = [q["id"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]
    assert ids == ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2", "2-0"]


def runs(coit_gain: float, seeds=(0, 1, 2)) -> list[dict]:
    def run(kind, seed, chrf, f1, off):
        metrics = {
            "flores/en-de/chrf_pp": chrf,
            "flores/en-de/bleu": chrf / 10,
            "flores/en-de/off_target": off,
            "qa/xquad-de/paper_match": f1 / 2,
            "qa/xquad-de/f1": f1,
        }
        return {
            "kind": kind,
            "language": "de",
            "seed": seed,
            "steps": 5,
            "seconds": 60.0,
            "metrics": metrics,
        }

    found = [run("base", None, 15.0, 10.0, 12.5)]
    for seed in seeds:
        found.append(run("english_only", seed, 16.0 + seed, 11.0 + seed, 10.0))
        found.append(
            run("coit", seed, 16.0 + seed + coit_gain + 0.1 * seed, 11.0 + seed + coit_gain, 2.5)
        )
    return found


def test_claim_1_by_the_reproduction_rule_on_made_up_scores():
    settings = real_model.Settings()
    found = real_model.compare(settings, runs(coit_gain=3.0))["de"]
    assert found["claim1"]["verdict"] == "reproduced"
    assert all(found["goals"].values())
    assert 3.0 < found["paired"]["chrF++"].mean < 3.2
    text = real_model.report_text(settings, {"de": found}, 60.0)
    assert "lines 1-800 are the training pairs" in text and "| de | CoIT | 3 |" in text

    worse = real_model.compare(settings, runs(coit_gain=-3.0))["de"]
    assert worse["claim1"]["verdict"] == "not reproduced"
    assert not worse["goals"]["chrF++ above English-only"]

    one = real_model.compare(real_model.QUICK, runs(coit_gain=3.0, seeds=(0,)))["de"]
    assert one["claim1"]["verdict"].startswith("undecided")
    assert not one["goals"]["chrF++ above the base model"]  # one seed decides nothing
