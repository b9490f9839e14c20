"""benchmarks/demo_robustness.py on the tiny demo assets: each run is the demo config's ``fit``
with its own seed, threads and output folders; the report gives the range and the verdict; a
second call reruns nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import demo_robustness  # noqa: E402


def test_run_config_sets_the_seed_the_outputs_and_the_changes(tmp_path):
    base = {
        "seed_everything": 42,
        "model": {"init_args": {"learning_rate": 1e-3}},
        "trainer": {
            "default_root_dir": "artifacts/demo/runs",
            "callbacks": [
                {"class_path": "x.HFExport", "init_args": {"output_dir": "artifacts/demo/final"}},
                {"class_path": "x.TranslationEvaluation", "init_args": {"max_samples": 100}},
            ],
        },
    }
    config = demo_robustness.run_config(
        base,
        [
            "model.init_args.learning_rate=2e-3",
            "trainer.callbacks.TranslationEvaluation.max_samples=7",
        ],
        seed=3,
        folder=tmp_path,
    )
    assert config["seed_everything"] == 3
    assert config["model"]["init_args"]["learning_rate"] == 2e-3
    assert config["trainer"]["default_root_dir"] == str(tmp_path / "runs")
    assert config["trainer"]["callbacks"][0]["init_args"]["output_dir"] == str(
        tmp_path / "final_model"
    )
    assert config["trainer"]["callbacks"][1]["init_args"]["max_samples"] == 7
    assert base["seed_everything"] == 42  # the base config is left alone
    with pytest.raises(SystemExit, match="no callback named Missing"):
        demo_robustness.run_config(base, ["trainer.callbacks.Missing.x=1"], 0, tmp_path)
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        demo_robustness.run_config(base, ["trainer.max_epochs"], 0, tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ("model.init_arg.lr=1", "the config has no model.init_arg to set a key in"),
        ("model.init_args.learning_rate.x=1", "model.init_args.learning_rate is a value"),
        ("trainer.callbacks.HFExport=1", "name a callback's argument|no callback named"),
        ("trainer.callbacks.HFExport.output_dir=x", "each run sets this itself"),
        ("seed_everything=3", "each run sets this itself"),
    ],
)
def test_a_set_that_cannot_apply_is_refused_naming_it(tmp_path, change, message):
    base = {"model": {"init_args": {"learning_rate": 1e-3}}, "trainer": {"callbacks": []}}
    with pytest.raises(SystemExit, match=message):
        demo_robustness.run_config(base, [change], 0, tmp_path)


def test_numbers_in_exponent_form_are_numbers_and_other_words_stay_words():
    assert demo_robustness.parse_value("2e-3") == 2e-3
    assert demo_robustness.parse_value("nan") == "nan"
    assert demo_robustness.parse_value("[1, 2]") == [1, 2]


def result(name: str, chrf: float) -> dict:
    scores = dict.fromkeys(demo_robustness.HEADLINE, 1.0) | {"chrF++": chrf}
    return {
        "name": name,
        "seed": 0,
        "threads": 1,
        "seconds": 60,
        "scores": scores,
        "curve": [(0, 2.0), (9, chrf)],
    }


def test_the_verdict_is_the_spread_against_the_tolerance():
    robust = demo_robustness.report([result("a", 70.0), result("b", 75.5)], [], 3.0)
    assert "**robust**" in robust and "any two runs within 3: no" in robust
    header = robust.splitlines()[4]  # then the rule and the two runs: one cell a heading
    assert [row.count("|") for row in robust.splitlines()[5:8]] == [header.count("|")] * 3
    assert "| chrF++ | 70.00 | 75.50 | 5.50 |" in robust
    fragile = demo_robustness.report([result("a", 54.2), result("b", 72.9)], ["x=1"], 3.0)
    assert "**NOT robust**" in fragile and "`x=1`" in fragile


@pytest.mark.slow
def test_two_seeds_and_other_kernels_train_through_fit_and_a_second_call_reuses_them(
    demo_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative --out, while the runs start in --root
    out = tmp_path / "out"
    argv = [
        "--config", str(demo_root / "configs" / "demo.yaml"),
        "--root", str(demo_root),
        "--seeds", "0", "1",
        "--thread-variants", "2",  # the same as --threads: run once
        "--kernel-variants", "default",
        "--set", "trainer.max_steps=3",
        "--set", "trainer.val_check_interval=3",
        "--set", "data.init_args.batch_size=4",
        "--set", "trainer.callbacks.TranslationEvaluation.max_samples=4",
        "--set", "trainer.callbacks.QAEvaluation.max_samples=4",
        "--out", "out",
    ]  # fmt: skip
    demo_robustness.main(argv)
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["seed0-t2", "seed1-t2", "seed0-t2-default"]
    assert [r["config"]["seed_everything"] for r in results] == [0, 1, 0]
    assert [r["kernels"] for r in results] == [None, None, "default"]
    for run in results:
        # before training and at the end (metrics.csv logs the last validation at step 3 - 1)
        assert [step for step, _ in run["curve"]] == [0, 2]
        assert (out / "work" / run["name"] / "final_model" / "model.safetensors").is_file()
    report = (out / "report.md").read_text()
    assert "| score | min | max | max - min |" in report and "robust**" in report
    assert "seed0-t2: chrF++" in capsys.readouterr().out
    demo_robustness.main(argv)  # every run cached: nothing trains again
    assert "chrF++" not in capsys.readouterr().out.split("# The demo")[0]
