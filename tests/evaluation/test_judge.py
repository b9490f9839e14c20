"""The LLM judge against a local OpenAI-compatible server (no network): single and pairwise
judging, retries (timeouts, 429 with Retry-After, 5xx, malformed JSON), the cache, the API key kept
out of every file, and the callback inside ``Trainer.fit``."""

from __future__ import annotations

import json
import math
import pickle
import socket
import time
from pathlib import Path

import pytest
from judge_server import Content, Fail, JudgeServer, RawBody, Sleep
from lightning.pytorch.loggers import CSVLogger
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import JudgeEvaluation
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.evaluation.judge import (
    JudgeClient,
    JudgeItem,
    JudgeSettings,
    combine_orders,
    judge_items,
    judge_outputs,
    pairwise_messages,
    parse_pairwise,
    parse_single,
    single_messages,
)
from lightning_xllama.training.module import XLlamaModule

KEY_ENV = "XLLAMA_TEST_JUDGE_KEY"
KEY = "sk-test-NEVER-WRITE-ME-7f3a9c"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture
def server():
    with JudgeServer() as judge:
        yield judge


def settings(server: JudgeServer, **overrides) -> JudgeSettings:
    """Fast settings: short timeout, backoff from 0.01 s, one request at a time (scripts in order)."""
    values = dict(
        base_url=server.url,
        model="judge-model",
        api_key_env=KEY_ENV,
        timeout=2.0,
        max_attempts=3,
        backoff_base=0.01,
        backoff_max=0.05,
        retry_after_max=1.0,
        concurrency=1,
    )
    return JudgeSettings(**{**values, **overrides})


def item(answer: str, reference: str | None = None, lang: str = "zh") -> JudgeItem:
    return JudgeItem("写一首关于秋天的短诗。", "", lang, answer, reference)


def judge(server, items, mode="single", waits=None, **overrides):
    """``judge_items`` with a client whose waits are recorded instead of slept."""
    sleep = waits.append if waits is not None else time.sleep
    with JudgeClient(settings(server, **overrides), sleep=sleep) as client:
        return judge_items(items, mode, client)


def files_containing(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


# --- prompts and verdicts --------------------------------------------------------------------


def test_prompts_state_the_expected_language_and_the_fault():
    system, user = single_messages("写一首诗。", "", "zh", "A poem in English.")
    assert system["role"] == "system" and "must be written in Chinese" in system["content"]
    assert "Simplified" in system["content"]  # the language's own note
    assert "language other than Chinese is a serious fault" in system["content"]
    assert '"score"' in system["content"] and "[Answer]\nA poem in English." in user["content"]
    system, user = pairwise_messages("Σύνοψη", "κείμενο", "el", "one", "two")
    assert "Greek" in system["content"] and "Greeklish" in system["content"]
    assert '"winner"' in system["content"] and "[Input]\nκείμενο" in user["content"]
    assert user["content"].index("[Answer A]\none") < user["content"].index("[Answer B]\ntwo")
    farish = single_messages("x", "", "syn_far", "y")[0]["content"]
    assert "Farish" in farish and "cyrillic alphabet" in farish


def test_verdicts_are_parsed_or_rejected():
    assert parse_single('```json\n{"score": 7, "reason": "ok"}\n```') == {
        "score": 7.0,
        "reason": "ok",
    }
    assert parse_single('Verdict: {"score": "9"}')["score"] == 9.0
    for bad in ('{"score": 11}', '{"score": true}', '{"reason": "no score"}', "seven", "{oops"):
        assert parse_single(bad) is None
    assert parse_pairwise('{"winner": "a"}')["winner"] == "A"
    assert parse_pairwise('{"winner": "Tie", "reason": "same"}')["winner"] == "tie"
    assert parse_pairwise('{"winner": "C"}') is None
    # model first (A) and reference first (model is B): a position-biased judge makes ties
    assert combine_orders("A", "B") == "win" and combine_orders("B", "A") == "loss"
    assert combine_orders("A", "A") == "tie" and combine_orders("tie", "tie") == "tie"
    assert combine_orders("A", "tie") == "win" and combine_orders("tie", "A") == "loss"


# --- single and pairwise runs ----------------------------------------------------------------


def test_single_answer_run_scores_and_reports(server, api_key, tmp_path):
    answers = [
        {"instruction": "写一首诗。", "output": "GOOD 秋天的诗", "lang": "zh"},
        {"instruction": "介绍北京。", "input": "简短", "output": "bad", "lang": "zh"},
    ]
    result = judge_outputs(answers, settings(server), output_dir=str(tmp_path / "out"))
    assert result["metrics"] == {"zh/score": 5.5, "zh/failed": 0.0}
    report = result["report"]["zh"]
    assert report["requests"] == 2 and report["cache_hits"] == 0 and report["failures"] == {}
    assert report["prompt_tokens"] > 0 and report["completion_tokens"] > 0
    assert report["scores"] == {"score": 5.5} and result["warnings"] == []
    assert [b["model"] for b in server.bodies] == ["judge-model"] * 2
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)
    written = [json.loads(line) for line in (tmp_path / "out" / "judgements-zh.jsonl").open()]
    assert [r["score"] for r in written] == [8.0, 3.0] and written[0]["reason"] == "scripted"
    assert json.loads((tmp_path / "out" / "judge-report.json").read_text())["metrics"]["zh/score"]


def test_pairwise_run_sends_both_orders_and_counts_ties_half(server, api_key):
    items = [item("GOOD a", "b"), item("a", "GOOD b"), item("GOOD a", "GOOD b")]
    run = judge(server, items, "pairwise")
    assert len(server.requests) == 6
    for index, it in enumerate(items):
        pairs = set()
        for body in server.bodies[2 * index : 2 * index + 2]:
            user = body["messages"][-1]["content"]
            first = user.split("[Answer A]\n")[1].split("\n[End of Answer A]")[0]
            second = user.split("[Answer B]\n")[1].split("\n[End of Answer B]")[0]
            pairs.add((first, second))
        assert pairs == {(it.answer, it.reference), (it.reference, it.answer)}
    assert [r["outcome"] for r in run.records] == ["win", "loss", "tie"]
    assert run.scores == {"win_rate": 50.0, "wins": 1, "ties": 1, "losses": 1}
    copy = pickle.loads(pickle.dumps(run))  # what rank 0 broadcasts to the other ranks
    assert copy.stats.as_dict() == run.stats.as_dict() and copy.records == run.records


def test_a_judge_that_always_picks_the_first_answer_cancels_out(api_key):
    with JudgeServer(reply=lambda body: '{"winner": "A", "reason": "first"}') as biased:
        run = judge(biased, [item("GOOD a", "b"), item("a", "GOOD b")], "pairwise")
    assert [r["outcome"] for r in run.records] == ["tie", "tie"]
    assert run.scores["win_rate"] == 50.0


# --- failures and retries --------------------------------------------------------------------


def test_timeouts_are_retried_then_counted(server, api_key):
    server.queue(Sleep(0.6), Sleep(0.6))
    start = time.perf_counter()
    run = judge(server, [item("GOOD a"), item("b")], timeout=0.2, max_attempts=2)
    assert time.perf_counter() - start < 3
    assert len(server.requests) == 3  # 2 attempts for the first answer, 1 for the second
    assert run.stats.failures == {"timeout": 1} and run.stats.attempt_errors == {"timeout": 2}
    assert run.stats.retries == 1 and run.records[0]["failure"] == "timeout"
    assert run.judged == 1 and run.failed == 1 and run.scores == {"score": 3.0}
    assert "1 of 2 answers could not be judged (timeout: 1)" in run.failure_message("judge/zh")


def test_429_waits_as_long_as_retry_after_says_up_to_the_cap(server, api_key):
    server.queue(Fail(429, {"Retry-After": "0.3"}), Fail(429, {"Retry-After": "100"}))
    waits = []
    run = judge(server, [item("GOOD a")], waits=waits, retry_after_max=0.5)
    assert waits == [0.3, 0.5]  # asked 0.3 s; asked 100 s, capped at retry_after_max
    assert run.scores == {"score": 8.0} and run.stats.failures == {}
    assert run.stats.attempt_errors == {"rate_limit": 2} and run.stats.requests == 3
    server.queue(Fail(429))  # no header: exponential backoff from backoff_base
    waits.clear()
    judge(server, [item("b")], waits=waits)
    assert 0.005 <= waits[0] <= 0.01


def test_server_errors_back_off_exponentially_then_succeed(server, api_key):
    server.queue(Fail(500), Fail(503))
    waits = []
    run = judge(server, [item("GOOD a")], waits=waits)
    assert run.scores == {"score": 8.0} and run.stats.attempt_errors == {"server_error": 2}
    assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02
    server.queue(Fail(401))  # a wrong key fails the same way again: not retried
    run = judge(server, [item("a")], waits=[])
    assert run.stats.failures == {"client_error": 1} and run.stats.requests == 1


def test_malformed_json_is_retried_then_counted_and_no_score_is_made_up(server, api_key):
    server.queue(Content("I would give it a seven."), Content('{"score": 11}'), RawBody(b'{"id'))
    with pytest.warns(UserWarning, match="every judgement failed"):
        result = judge_outputs(
            [{"instruction": "写诗", "output": "GOOD", "lang": "zh"}], settings(server)
        )
    report = result["report"]["zh"]
    assert report["failures"] == {"malformed_json": 1}
    assert report["attempt_errors"] == {"malformed_json": 3} and report["requests"] == 3
    assert result["metrics"] == {"zh/failed": 1.0} and report["scores"] == {}
    assert not any(isinstance(v, float) and math.isnan(v) for v in result["metrics"].values())


# --- cache and key -----------------------------------------------------------------------------


def test_the_cache_makes_a_second_run_free(server, api_key, tmp_path):
    answers = [
        {"instruction": f"问题 {i}", "output": "GOOD" if i % 2 else "x", "lang": "zh"}
        for i in range(4)
    ]
    cached = settings(server, cache_dir=str(tmp_path / "cache"), concurrency=3)
    first = judge_outputs(answers, cached)
    sent = len(server.requests)
    second = judge_outputs(answers, cached)
    assert sent == 4 and len(server.requests) == sent  # not one request more
    assert second["report"]["zh"]["cache_hits"] == 4 and second["report"]["zh"]["requests"] == 0
    assert second["report"]["zh"]["prompt_tokens"] == 0
    assert second["metrics"] == first["metrics"] == {"zh/score": 5.5, "zh/failed": 0.0}
    other_judge = JudgeSettings(**{**cached.__dict__, "model": "another-judge"})
    judge_outputs(answers, other_judge)
    assert len(server.requests) == 8  # the judge model is part of the key


def test_the_key_comes_only_from_the_named_variable_and_is_written_nowhere(
    server, api_key, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    answers = [{"instruction": "写诗", "output": "GOOD", "lang": "zh"}]
    judge_outputs(answers, settings(server, cache_dir=str(out / "cache")), output_dir=str(out))
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert (out / "cache" / "judge-cache.jsonl").is_file()
    assert files_containing(out, KEY) == [] and files_containing(out, KEY_ENV) == []
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=f"environment variable '{KEY_ENV}', which is not set"):
        judge_outputs(answers, settings(server))
    assert settings(server, api_key_env=None).api_key() == "no-key"


# --- the callback --------------------------------------------------------------------------------


def judge_callback(tiny_data: Path, url: str, **overrides) -> JudgeEvaluation:
    instructions = str(DataLayout(tiny_data).instructions("syn_far"))
    values = dict(
        files={"syn_far": instructions},
        base_url=url,
        model="judge-model",
        api_key_env=KEY_ENV,
        timeout=2.0,
        max_attempts=2,
        backoff_base=0.01,
        max_samples=2,
        batch_size=2,
        max_new_tokens=8,
        before_training=False,
    )
    return JudgeEvaluation(**{**values, **overrides})


def test_callback_in_fit_logs_scores_and_keeps_the_key_out_of_the_run_folder(
    tiny_model, tiny_data, server, api_key, tmp_path
):
    instructions = str(DataLayout(tiny_data).instructions("syn_far"))
    single = judge_callback(tiny_data, server.url)
    pairwise = judge_callback(
        tiny_data,
        server.url,
        name="judge_pair",
        mode="pairwise",
        references={"syn_far": instructions},  # the files' own outputs as the reference answers
    )
    run_dir = tmp_path / "run"
    trainer = quiet_trainer(
        max_steps=2,
        val_check_interval=2,
        limit_val_batches=1,
        logger=CSVLogger(run_dir),
        callbacks=[single, pairwise],
    )
    trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics["val/judge/syn_far/score"] == 3.0  # the scripted judge: no "GOOD" in answers
    assert metrics["val/judge_pair/syn_far/win_rate"] == 50.0  # neither is "GOOD": ties
    assert metrics["val/judge/syn_far/failed"] == 0.0 and "val/judge/syn_far/off_target" in metrics
    assert len(server.requests) == 2 + 4  # 2 single judgements, 2 pairs in both orders

    log_dir = Path(trainer.log_dir)
    records = [json.loads(line) for line in (log_dir / "judge" / "syn_far-step2.jsonl").open()]
    assert [r["score"] for r in records] == [3.0, 3.0] and "language" in records[0]
    report = json.loads((log_dir / "judge_pair" / "report-step2.json").read_text())["syn_far"]
    assert report["requests"] == 4 and report["scores"]["ties"] == 2
    assert (log_dir / "judge" / "cache" / "judge-cache.jsonl").is_file()
    assert (log_dir / "hparams.yaml").is_file() and (log_dir / "metrics.csv").is_file()
    assert files_containing(run_dir, KEY) == []


def test_callback_survives_a_dead_endpoint(tiny_model, tiny_data, api_key, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    callback = judge_callback(tiny_data, f"http://127.0.0.1:{port}/v1")
    trainer = quiet_trainer(
        max_steps=2,
        val_check_interval=2,
        limit_val_batches=1,
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
    )
    with pytest.warns(UserWarning, match=r"every judgement failed \(connection: 2\)"):
        trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert trainer.global_step == 2 and metrics["val/judge/syn_far/failed"] == 2.0
    assert "val/judge/syn_far/score" not in metrics
    assert not any(math.isnan(v) for v in metrics.values())


def test_callback_fails_at_setup_on_a_missing_key_or_misaligned_references(
    tiny_data, tmp_path, monkeypatch
):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        judge_callback(tiny_data, "http://127.0.0.1:9/v1").prepare()
    monkeypatch.setenv(KEY_ENV, KEY)
    other = tmp_path / "refs.jsonl"
    other.write_text(json.dumps({"instruction": "something else", "output": "x"}) + "\n")
    callback = judge_callback(
        tiny_data, "http://127.0.0.1:9/v1", mode="pairwise", references={"syn_far": str(other)}
    )
    with pytest.raises(ValueError, match="same order"):
        callback.prepare()
    with pytest.raises(ValueError, match="reference answers for every language"):
        judge_callback(tiny_data, "http://127.0.0.1:9/v1", mode="pairwise")


def test_callback_runs_outside_training_as_evaluate_does(
    tiny_model, tiny_data, server, api_key, tmp_path
):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    callback = judge_callback(tiny_data, server.url, cache_dir=str(tmp_path / "cache"))
    callback.prepare()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_model), load_tokenizer(tiny_model)
    result = callback.run(model, tokenizer)
    files = callback.write_outputs(result, tmp_path / "judge", tag="")
    assert result.metrics["judge/syn_far/score"] == 3.0
    assert (tmp_path / "judge" / "report.json").is_file() and files["syn_far"].is_file()
    markdown = callback.markdown(result, files, tmp_path)
    assert "single judging by `judge-model`" in markdown and "2 requests" in markdown
