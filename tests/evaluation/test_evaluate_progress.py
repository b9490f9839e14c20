"""A long ``evaluate`` shows its progress, keeps its outputs as they come and resumes; ``predict``
writes as it goes."""

from __future__ import annotations

import io
import json

import lightning as L
import pytest
import yaml
from test_evaluate_command import evaluation_config
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import JsonlPredictionWriter, TranslationEvaluation
from lightning_xllama.commands.main import main
from lightning_xllama.runtime.progress import LogProgress
from lightning_xllama.training.module import XLlamaModule


class InterruptedTranslation(TranslationEvaluation):
    """A translation evaluation whose run is stopped, as by Ctrl-C, once ``stop_after`` batches
    were generated (None: never); ``batches`` counts the batches generated. Class attributes, not
    settings: a resumed run has the same settings as the stopped one."""

    stop_after = None
    batches = 0

    def run(self, model, tokenizer, sharded: bool = False):
        real = model.generate

        def generate(*args, **kwargs):
            if InterruptedTranslation.stop_after == InterruptedTranslation.batches:
                raise KeyboardInterrupt
            InterruptedTranslation.batches += 1
            return real(*args, **kwargs)

        model.generate = generate
        try:
            return super().run(model, tokenizer, sharded)
        finally:
            del model.generate


def write_config(tmp_path, tiny_model, tiny_data, **translation) -> str:
    """QA first, then the interruptible translation (7 sentences, 2 a batch: 4 batches)."""
    config = evaluation_config(tiny_model, tiny_data, tmp_path / "report")
    translation_entry, qa, _ = config["evaluations"]
    translation_entry["class_path"] = f"{__name__}.InterruptedTranslation"
    translation_entry["init_args"].update(translation)
    config["evaluations"] = [qa, translation_entry]
    path = tmp_path / "evaluate.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def rows(path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if "row" in r]


def test_a_line_shows_the_time_left():
    stream = io.StringIO()
    bar = LogProgress(desc="translation en-de", total=212, unit="prompts", stream=stream)
    bar.start -= 31.0  # 31 s ago
    bar.update(96)
    assert stream.getvalue().startswith(
        "translation en-de: 96/212 prompts (45%) in 31s, 3.1 prompts/s, ETA 0:37"
    )


def test_evaluate_shows_progress_keeps_partial_outputs_and_resumes(
    tiny_model, tiny_data, tmp_path, capsys, caplog
):
    config = write_config(tmp_path, tiny_model, tiny_data)
    report = tmp_path / "report"
    InterruptedTranslation.stop_after, InterruptedTranslation.batches = 2, 0
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", "--config", config])
    err = capsys.readouterr().err
    # progress of each set, in plain lines (stderr is not a terminal here)
    assert "qa syn_far: 5/5 prompts (100%)" in err
    assert "translation en-syn_far: 2/7 prompts" in err
    # the finished evaluation's scores are saved, the stopped set's two batches are on disk
    assert (report / "qa" / "result.json").is_file()
    partial = report / "translation" / "en-syn_far.partial.jsonl"
    kept = rows(partial)
    assert len(kept) == 4 and all(r["prompt"] and "output" in r for r in kept)
    assert not (report / "report.json").exists()

    InterruptedTranslation.stop_after, InterruptedTranslation.batches = None, 0
    main(["evaluate", "--config", config, "--resume", "true"])
    captured = capsys.readouterr()
    assert InterruptedTranslation.batches == 2  # the 3 missing rows, 2 a batch
    assert "qa: finished before, scores read from" in captured.out
    assert "qa syn_far:" not in captured.err  # nothing generated for the finished evaluation
    assert "translation en-syn_far: 4 of 7 outputs read from" in caplog.text
    assert "translation en-syn_far: 3/3 prompts (100%)" in captured.err
    outputs = [json.loads(line) for line in (report / "translation" / "en-syn_far.jsonl").open()]
    by_prompt = {r["prompt"]: r["output"] for r in kept}
    assert len(outputs) == 7
    assert sum(o["hypothesis"] in by_prompt.values() for o in outputs) >= 4
    assert not partial.exists()
    result = json.loads((report / "report.json").read_text())
    assert {"translation/en-syn_far/bleu", "qa/syn_far/paper_match"} <= set(result["metrics"])

    # other settings: refused, naming the file
    other = write_config(tmp_path, tiny_model, tiny_data, max_new_tokens=5)
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--config", other, "--resume", "true"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "settings.json" in err and "evaluations" in err


class StopAfterTwoBatches(L.Callback):
    """Fails the predict pass after its second batch, as a crash or a kill would stop it."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, **kwargs):
        if batch_idx == 1:
            raise RuntimeError("stopped after two batches")


def test_predict_writes_each_batch_and_shows_progress_in_logs(
    tiny_model, tiny_data, tmp_path, capsys
):
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"instruction": "say it", "input": f"{i} cats"}) for i in range(5)]
    prompts.write_text("\n".join(lines) + "\n")
    output = tmp_path / "answers.jsonl"
    module = XLlamaModule(tiny_model, max_new_tokens=3)
    data = tiny_datamodule(tiny_model, tiny_data, predict_file=str(prompts), eval_batch_size=2)
    stopped = quiet_trainer(callbacks=[JsonlPredictionWriter(str(output)), StopAfterTwoBatches()])
    with pytest.raises(RuntimeError, match="two batches"):
        stopped.predict(module, datamodule=data, return_predictions=False)
    partial = tmp_path / "answers.partial.jsonl"
    assert [json.loads(line)["id"] for line in partial.open()] == [0, 1, 2, 3]
    assert not output.exists()
    capsys.readouterr()

    data = tiny_datamodule(tiny_model, tiny_data, predict_file=str(prompts), eval_batch_size=2)
    trainer = quiet_trainer(callbacks=[JsonlPredictionWriter(str(output))])
    trainer.predict(module, datamodule=data, return_predictions=False)
    assert [json.loads(line)["id"] for line in output.open()] == [0, 1, 2, 3, 4]
    assert not partial.exists()
    assert "predict: 3/3 batches (100%)" in capsys.readouterr().err
