"""``python -m lightning_xllama evaluate``: the callbacks' code on a saved model, JSON + markdown report."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_cli
from ddp_callbacks import PROBE_PAIRS, QUESTIONS, TRANSLATIONS, validate_metrics

from lightning_xllama.commands.main import main
from lightning_xllama.demo.layout import DataLayout


def evaluation_config(model, data, output_dir, qa_file=None) -> dict:
    """The evaluations of ``ddp_callbacks.evaluation_callbacks`` as an ``evaluate`` config."""
    test = str(DataLayout(data).translation_test("syn_far"))
    return {
        "model": str(model),
        "output_dir": str(output_dir),
        "language_modules": ["lightning_xllama.demo.languages"],  # syn_far: the demo's plug-in
        "evaluations": [
            {
                "class_path": "TranslationEvaluation",
                "init_args": {
                    "directions": ["en-syn_far"],
                    "test_prefix": test,
                    "max_samples": TRANSLATIONS,
                    "batch_size": 2,
                    "max_new_tokens": 6,
                },
            },
            {
                "class_path": "lightning_xllama.callbacks.QAEvaluation",
                "init_args": {
                    "files": {"syn_far": str(qa_file or DataLayout(data).qa("syn_far"))},
                    "prompt_style": "question",
                    "max_samples": QUESTIONS,
                    "batch_size": 2,
                    "max_new_tokens": 6,
                },
            },
            {
                "class_path": "RepresentationProbe",
                "init_args": {
                    "directions": ["en-syn_far"],
                    "test_prefix": test,
                    "num_sentences": PROBE_PAIRS,
                    "batch_size": 4,
                },
            },
        ],
    }


def test_evaluate_writes_the_reports_with_the_validation_scores(tiny_model, tiny_data, tmp_path):
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump(evaluation_config(tiny_model, tiny_data, tmp_path / "report")))
    result = run_cli(["evaluate", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # the same scores as the callbacks logged in a validation pass of the same model
    logged, _ = validate_metrics(tiny_model, tiny_data)
    assert report["metrics"] == pytest.approx(
        {key[len("val/") :]: value for key, value in logged.items()}, rel=1e-5, abs=1e-6
    )
    assert report["model"] == tiny_model and set(report["seconds"]) == {
        "translation",
        "qa",
        "probe",
    }
    assert report["details"]["translation"]["en-syn_far"]["bleu_signature"].startswith("nrefs:1|")
    assert len(report["details"]["probe"]["en-syn_far"]["cosine_gap"]) == 3  # embeddings + 2 layers
    markdown = (tmp_path / "report" / "report.md").read_text()
    for heading in (
        "## translation (TranslationEvaluation)",
        "## qa (QAEvaluation)",
        "## probe (RepresentationProbe)",
    ):
        assert heading in markdown
    assert "| set | bleu | chrf_pp | exact_match | off_target | undetermined |" in markdown
    assert "tok:13a" in markdown and "![en-syn_far alignment](probe/en-syn_far.png)" in markdown
    outputs = (tmp_path / "report" / "translation" / "en-syn_far.jsonl").read_text().splitlines()
    assert len(outputs) == TRANSLATIONS
    assert (tmp_path / "report" / "probe" / "en-syn_far.png").is_file()


def test_evaluate_checks_every_file_before_loading_the_model(tiny_data, tmp_path, capsys):
    unloadable = tmp_path / "model"
    unloadable.mkdir()
    (unloadable / "config.json").write_text("{}")  # passes the path check; loading it would fail
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        yaml.safe_dump(
            evaluation_config(
                unloadable,
                tiny_data,
                tmp_path / "report",
                qa_file=tmp_path / "absent.json",
            )
        )
    )
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--config", str(config)])
    assert stopped.value.code == 2
    assert "absent.json" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_evaluate_refuses_two_evaluations_with_one_name(tiny_model, tiny_data, tmp_path, capsys):
    config = evaluation_config(tiny_model, tiny_data, tmp_path / "report")
    config["evaluations"][2]["init_args"]["name"] = "qa"
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--config", str(tmp_path / "evaluate.yaml")])
    assert stopped.value.code == 2
    assert "names must differ" in capsys.readouterr().err
