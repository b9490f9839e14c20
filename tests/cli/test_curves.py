"""Pictures where people look: ``curves.png`` when ``fit`` ends, ``paper_table.png`` after
``evaluate --paper``."""

from __future__ import annotations

import json

from ddp_callbacks import evaluation_callbacks
from lightning.pytorch.loggers import CSVLogger
from matplotlib.image import imread
from training_utils import fit_tiny

from lightning_xllama.callbacks import MetricsSummary
from lightning_xllama.commands.main import main


def test_fit_draws_the_loss_and_each_headline_metric_beside_metrics_csv(
    tiny_model, tiny_data, tmp_path, capsys
):
    summary = MetricsSummary()
    translation, qa, _ = evaluation_callbacks(tiny_data)
    trainer = fit_tiny(
        tiny_model,
        tiny_data,
        max_steps=2,
        log_every_n_steps=1,
        limit_val_batches=1,
        val_check_interval=2,
        logger=CSVLogger(tmp_path / "logs"),
        callbacks=[translation, qa, summary],
    )
    folder = tmp_path / "logs" / "lightning_logs" / "version_0"
    assert trainer.logger.log_dir == str(folder) and (folder / "metrics.csv").is_file()
    picture = imread(folder / "curves.png")  # a PNG matplotlib reads back
    assert picture.shape[0] > 100 and picture.shape[1] > 100
    assert summary.curve_titles == [
        "loss",
        "translation/en-syn_far/chrf_pp",
        "qa/syn_far/paper_match",
    ]
    assert f"training curves drawn in {folder / 'curves.png'}" in capsys.readouterr().out


def test_evaluate_paper_draws_the_table_as_bars(tiny_model, tmp_path):
    xquad = tmp_path / "xquad"
    xquad.mkdir()
    question = {
        "id": "q0",
        "question": "中国的首都是哪里？",
        "answers": [{"text": "北京", "answer_start": 0}],
    }
    paragraph = {"context": "北京是中国的首都。", "qas": [question]}
    document = {"data": [{"title": "t", "paragraphs": [paragraph]}]}
    (xquad / "xquad.zh.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "paper"
    main(
        ["evaluate", "--model", tiny_model, "--paper.languages", "[zh]"]
        + ["--paper.xquad_dir", str(xquad), "--output_dir", str(out)]
    )
    assert (out / "paper_table.md").is_file()
    picture = imread(out / "paper_table.png")
    assert picture.shape[0] > 100 and picture.shape[1] > 100
