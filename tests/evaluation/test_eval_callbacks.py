"""The evaluation callbacks in Trainer runs: scores, outputs, schedule, failures at setup, 2 ranks,
and a user's own callback loaded from the command line and from YAML."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import yaml
from comet_fixture import build_tiny_comet
from conftest import run_cli
from ddp_callbacks import evaluation_callbacks, validate_metrics
from lightning.pytorch.loggers import CSVLogger
from paths import HELPERS, helper_env
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import (
    QAEvaluation,
    RepresentationProbe,
    TranslationEvaluation,
)
from lightning_xllama.callbacks.qa import qa_answer, qa_prompt
from lightning_xllama.data.eval_sets import QAExample
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.evaluation import qa_metrics
from lightning_xllama.evaluation.off_target import OffTargetRate, build_identifier
from lightning_xllama.evaluation.translation_metrics import comet_score, load_comet
from lightning_xllama.training.module import XLlamaModule

needs_comet = pytest.mark.skipif(
    importlib.util.find_spec("comet") is None, reason="unbabel-comet is not installed"
)


def prefix_of(data: Path) -> str:
    """The synthetic en-syn_far test set's path prefix."""
    return str(DataLayout(data).translation_test("syn_far"))


class TableLogger(CSVLogger):
    """A CSV logger that also takes tables and images, as W&B's logger does (``log_text``, ``log_image``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tables, self.images = [], []

    def log_text(self, key, columns, data, step=None):
        self.tables.append((key, columns, data, step))

    def log_image(self, key, images, step=None):
        self.images.append((key, images, step))


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model), load_tokenizer(tiny_model)


@pytest.fixture(scope="module")
def tiny_comet(tmp_path_factory) -> Optional[str]:
    """A tiny COMET model folder, or None without unbabel-comet."""
    if importlib.util.find_spec("comet") is None:
        return None
    return str(build_tiny_comet(tmp_path_factory.mktemp("comet")).parent.parent)


def sacrebleu_cli(
    tmp_path: Path, hypotheses: list[str], references: list[str]
) -> tuple[float, float]:
    (tmp_path / "hyp.txt").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "sacrebleu",
        str(tmp_path / "ref.txt"),
        "-i",
        str(tmp_path / "hyp.txt"),
        "-m",
        "bleu",
        "chrf",
        "--chrf-word-order",
        "2",
        "-w",
        "6",
    ]
    bleu, chrf = json.loads(
        subprocess.run(command, capture_output=True, text=True, check=True).stdout
    )
    return bleu["score"], chrf["score"]


def test_validation_pass_logs_scores_outputs_and_tables(tiny_model, tiny_data, tmp_path):
    logger = TableLogger(tmp_path)
    translation, qa, probe = evaluation_callbacks(tiny_data)
    translation.table_rows = 3
    trainer = quiet_trainer(limit_val_batches=1, logger=logger, callbacks=[translation, qa, probe])
    trainer.validate(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    out = Path(logger.log_dir)

    # translation: the scores are sacreBLEU's command line on the written outputs
    records = [
        json.loads(line)
        for line in (out / "translation" / "en-syn_far-step0.jsonl").read_text().splitlines()
    ]
    assert len(records) == 7 and set(records[0]) == {
        "source",
        "reference",
        "hypothesis",
        "language",
    }
    bleu, chrf = sacrebleu_cli(
        tmp_path, [r["hypothesis"] for r in records], [r["reference"] for r in records]
    )
    assert metrics["val/translation/en-syn_far/bleu"] == pytest.approx(bleu, abs=1e-4)
    assert metrics["val/translation/en-syn_far/chrf_pp"] == pytest.approx(chrf, abs=1e-4)
    assert chrf > 0
    off = sum(r["language"] not in (None, "syn_far") for r in records)
    undetermined = sum(r["language"] is None for r in records)
    assert metrics["val/translation/en-syn_far/off_target"] == pytest.approx(
        100 * off / 7, abs=1e-4
    )
    assert metrics["val/translation/en-syn_far/undetermined"] == pytest.approx(
        100 * undetermined / 7, abs=1e-4
    )

    # QA: the logged scores are the per-answer rules averaged, headline = the files' rules (mlqa)
    answers = [
        json.loads(line) for line in (out / "qa" / "syn_far-step0.jsonl").read_text().splitlines()
    ]
    assert len(answers) == 5
    for rules in ("mlqa", "squad"):
        for name in ("exact_match", "f1", "contains"):
            score = getattr(qa_metrics, name)
            expected = (
                100 * sum(score(a["answer"], a["golds"], "syn_far", rules) for a in answers) / 5
            )
            assert metrics[f"val/qa/syn_far/{rules}/{name}"] == pytest.approx(expected, abs=1e-4)
    assert metrics["val/qa/syn_far/f1"] == metrics["val/qa/syn_far/mlqa/f1"]
    # the headline: the paper's match on the whole outputs
    matches = sum(qa_metrics.paper_match(a["output"], a["golds"]) for a in answers)
    assert metrics["val/qa/syn_far/paper_match"] == pytest.approx(100 * matches / 5, abs=1e-4)
    assert [a["paper_match"] for a in answers] == [
        qa_metrics.paper_match(a["output"], a["golds"]) for a in answers
    ]
    assert "val/qa/syn_far/off_target" in metrics

    # probe: a curve per layer, a plot per pass
    assert metrics["val/probe/en-syn_far/layer00/retrieval_src_to_tgt"] >= 0
    assert (out / "probe" / "en-syn_far-step0.png").is_file()

    # sample tables to the logger that takes them, and as markdown next to the outputs
    keys = {key: (columns, data) for key, columns, data, _ in logger.tables}
    columns, data = keys["val/translation/en-syn_far/samples"]
    assert columns == ["source", "reference", "hypothesis", "language"] and len(data) == 3
    assert data[0][0] == records[0]["source"]
    assert "val/qa/syn_far/samples" in keys
    assert logger.images == [
        ("val/probe/en-syn_far/alignment", [str(out / "probe" / "en-syn_far-step0.png")], 0)
    ]
    table = (out / "translation" / "en-syn_far-step0.md").read_text()
    assert (
        table.startswith("| source | reference | hypothesis | language |")
        and table.count("\n") == 5
    )


@needs_comet
def test_comet_scores_the_generated_translations(tiny_comet, tiny_data, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    callback = TranslationEvaluation(
        ["en-syn_far"],
        prefix_of(tiny_data),
        max_samples=3,
        max_new_tokens=4,
        comet_model=tiny_comet,
    )
    callback.prepare()
    result = callback.run(model, tokenizer)
    records = result.samples["en-syn_far"]
    system, segments = comet_score(
        load_comet(tiny_comet),
        [r["source"] for r in records],
        [r["hypothesis"] for r in records],
        [r["reference"] for r in records],
    )
    assert result.metrics["translation/en-syn_far/comet"] == pytest.approx(system)
    assert [r["comet"] for r in records] == pytest.approx(segments, abs=1e-4)
    assert result.details["en-syn_far"]["comet_model"] == tiny_comet


@pytest.mark.parametrize(
    "callback, message",
    [
        (
            lambda d: TranslationEvaluation(
                ["en-syn_far"], test_prefix=str(d / "missing" / "test")
            ),
            r"missing/test\.en",
        ),
        (
            lambda d: TranslationEvaluation(
                ["en-syn_far"], prefix_of(d), comet_model=str(d / "no-such-comet")
            ),
            "no-such-comet",
        ),
        (lambda d: TranslationEvaluation(["en-zh"], flores_dir=str(d)), r"eng\.devtest"),
        (lambda d: QAEvaluation(files={"syn_far": str(DataLayout(d).qa("nope"))}), r"nope\.json"),
        (lambda d: RepresentationProbe(["en-syn_near"], prefix_of(d)), r"test\.syn_near"),
    ],
)
def test_missing_data_fails_at_setup_before_training(tiny_model, tiny_data, callback, message):
    trainer = quiet_trainer(max_steps=2, callbacks=[callback(tiny_data)])
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    assert trainer.global_step == 0


def test_a_direction_with_no_data_fails_at_setup(tmp_path):
    (tmp_path / "test.en").write_text("")
    (tmp_path / "test.syn_far").write_text("")
    with pytest.raises(ValueError, match="empty"):
        TranslationEvaluation(["en-syn_far"], test_prefix=str(tmp_path / "test")).prepare()


class CountingProbe(RepresentationProbe):
    """Records the global step of every evaluation it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = []

    def measure(self, trainer, pl_module):
        self.steps.append(trainer.global_step)
        return super().measure(trainer, pl_module)


def test_schedule_before_training_and_every_n_validations(tiny_model, tiny_data, tmp_path):
    probe = CountingProbe(
        ["en-syn_far"], prefix_of(tiny_data), num_sentences=3, every_n_validations=2, plot=False
    )
    trainer = quiet_trainer(
        max_steps=4,
        val_check_interval=1,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=CSVLogger(tmp_path),
        callbacks=[probe],
    )
    trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    assert probe.steps == [
        0,
        2,
        4,
    ]  # before training, then every 2nd of 4 validations; not the sanity check
    assert probe.state_dict() == {"validations": 4}
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as handle:
        logged = [
            row for row in csv.DictReader(handle) if row.get("val/probe/en-syn_far/peak_layer")
        ]
    assert len(logged) == 3


def test_off_target_identifiers():
    world = SyntheticWorld(["syn_far"], seed=3)
    [(english, farish)] = world.translation_test("syn_far", 1)
    identifier = build_identifier(["en", "syn_far"])
    assert identifier.identify(english) == "en" and identifier.identify(farish) == "syn_far"
    near = SyntheticWorld(["syn_near"], seed=3).translation_test("syn_near", 1)[0][1]
    assert identifier.identify(near) == "syn_near"  # every synthetic language is a candidate
    metric = OffTargetRate(identifier, "syn_far")
    metric.update([farish, english, "", near])
    assert metric.compute() == {"off_target": 50.0, "undetermined": 25.0}
    assert (
        build_identifier(["en", "zh"]).identify("委员会将于明年春天发布关于新铁路的最终报告。")
        == "zh"
    )
    with pytest.raises(ValueError, match="separate callbacks"):
        build_identifier(["zh", "syn_far"])


def test_qa_prompt_in_the_target_language_and_answer_extraction():
    example = QAExample("1", "北京是中国的首都。", "中国的首都是哪里？", ("北京",), "zh")
    prompt = qa_prompt(example)
    assert (
        "根据上下文回答问题。" in prompt
        and "上下文: 北京是中国的首都。\n问题: 中国的首都是哪里？" in prompt
    )
    assert "### Instruction:\n中国的首都是哪里？\n\n### Input:\n北京是中国的首都。" in qa_prompt(
        example, "question"
    )
    assert qa_answer("答案：北京\n下一个问题", prompt, "zh") == "北京"
    assert qa_answer(prompt + "answer: Paris", prompt, "en") == "Paris"
    assert qa_answer("\n\n  the Seine river \nmore", "", "en") == "the Seine river"
    assert qa_answer("", prompt, "zh") == ""


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="xquad_dir or mlqa_dir"):
        QAEvaluation(languages=["zh"])
    with pytest.raises(ValueError, match="languages"):
        QAEvaluation(xquad_dir="x")
    with pytest.raises(ValueError, match="prompt style"):
        QAEvaluation(files={"en": "a.json"}, prompt_style="chat")
    with pytest.raises(ValueError, match="direction"):
        TranslationEvaluation([])


@pytest.mark.distributed
def test_two_ranks_finish_and_agree_with_one(tiny_model, tiny_data, tiny_comet, tmp_path):
    comet = [tiny_comet] if tiny_comet else []
    env = helper_env()
    out = tmp_path / "metrics"
    result = subprocess.run(
        [
            sys.executable,
            str(HELPERS / "ddp_callbacks.py"),
            tiny_model,
            str(tiny_data),
            str(out),
            *comet,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one_rank, _ = validate_metrics(tiny_model, tiny_data, *comet)
    assert len(one_rank) > 30 and ("val/translation/en-syn_far/comet" in one_rank) == bool(comet)
    for rank in (0, 1):
        assert json.loads(Path(f"{out}.rank{rank}.json").read_text()) == pytest.approx(
            one_rank, rel=1e-5, abs=1e-6
        )


def test_user_callback_from_the_command_line_and_yaml(demo_root, tmp_path):
    extra = tmp_path / "extra.yaml"
    example = {
        "class_path": "callbacks.print_samples.PrintSamples",
        "init_args": {
            "prompts": ["what is the subject of this sentence?"],
            "max_new_tokens": 3,
            "header": "from yaml",
        },
    }
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": [example]}}))
    result = run_cli(
        [
            "validate",
            "--config",
            "configs/demo.yaml",
            "--config",
            str(extra),
            "--trainer.limit_val_batches",
            "1",
            "--trainer.callbacks+=callbacks.print_samples.PrintSamples",
            "--trainer.callbacks.prompts=[how many words are in this sentence?]",
            "--trainer.callbacks.header=from the command line",
            "--trainer.callbacks.max_new_tokens=3",
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[from yaml] step 0\n  'what is the subject of this sentence?' -> " in result.stdout
    assert (
        "[from the command line] step 0\n  'how many words are in this sentence?' -> "
        in result.stdout
    )
