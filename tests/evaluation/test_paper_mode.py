"""Paper mode against the paper's own code (x-LLM): the 33 translation instructions by line index,
the FLORES test instruction and length, the U+FEFF its QA prompts keep, the template of
``evaluate --paper``, spBLEU both ways, the FairEval judge with its language gate, the XQuAD
YES/NO judge and the probe pooled as ``embedding.py`` pools."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from judge_server import JudgeServer
from official_xllm import OFFICIAL  # noqa: E402  (tests/helpers, on the path from conftest)

from lightning_xllama.callbacks import JudgeEvaluation, QAEvaluation
from lightning_xllama.callbacks.qa import qa_fields
from lightning_xllama.commands.main import main
from lightning_xllama.commands.paper_table import PaperBenchmarks, paper_table
from lightning_xllama.data.eval_sets import read_squad, xquad_file
from lightning_xllama.evaluation.judge import (
    JudgeClient,
    JudgeItem,
    JudgeSettings,
    judge_correctness,
    judge_items,
)
from lightning_xllama.evaluation.probe import pooled_hidden_states
from lightning_xllama.prompts import (
    TRANSLATION_INSTRUCTIONS,
    evaluation_translation_instruction,
    translation_instruction,
)

SHARED = Path("/work/shared/data")


# x-LLM eval/mieval.eval.py, gen_prompt, as it is written there (its indentation included)
FAIREVAL_USER = """[Question]
{question}

[The Start of Assistant 1's Answer]
{answer_1}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}
[The End of Assistant 2's Answer]

[System]
We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above.
    Please rate the helpfulness, relevance, accuracy, level of details of their responses.

    Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.
    Please first provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment. 
    Then, output two lines indicating the scores for Assistant 1 and 2, respectively.

    Output with the following format:
    Evaluation evidence: <your evluation explanation here>
    Score of the Assistant 1: <score>
    Score of the Assistant 2: <score>
"""  # noqa: E501, W291

# x-LLM eval/xquad.eval.py, template
CORRECTNESS = """You will be given a context followed by question. You will then be given one potential answer to the question.
Your task is to tell if the answer is correct.
Please make sure you read and understand these instructions carefully. Please keep this document open while reviewing, and refer to it as needed.

Evaluation Criteria:
Correctness (YES or NO): Is the answer correct?
YES means the answer provides an accurate and valid response that aligns with the facts, logic, and requirements of the question. The answer should be in the same language as the context.
NO means otherwise.

Context: {}
Answer: {}

Evaluation Form (YES or NO):
"""  # noqa: E501


def squad_file(path: Path, context: str, questions: list[tuple[str, str]]) -> Path:
    qas = [
        {"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": 0}]}
        for i, (q, a) in enumerate(questions)
    ]
    document = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


# --- 1. translation instructions ---------------------------------------------------------------
def test_official_rule_is_the_papers_33_instructions_by_line_index():
    names = {"source_lang": "English", "target_lang": "Modern Greek (1453-)"}
    for line in range(70):
        expected = OFFICIAL[line % 33].format_map(names)
        assert translation_instruction("official", line, random.Random(0), "en", "el") == expected
    assert translation_instruction("official", 34, None, "zh", "en") == (
        "What do the following sentences mean in English?"
    )


def test_package_rule_still_draws_one_of_its_22_paraphrases():
    drawn = translation_instruction("package", 5, random.Random(7), "en", "zh")
    expected = (
        random.Random(7).choice(TRANSLATION_INSTRUCTIONS).format(src="English", tgt="Chinese")
    )
    assert drawn == expected and len(TRANSLATION_INSTRUCTIONS) == 22
    with pytest.raises(ValueError, match="unknown translation instruction rule 'paper'"):
        translation_instruction("paper", 0, random.Random(0), "en", "zh")


def test_paper_flores_uses_the_official_test_instruction_and_512_new_tokens(tmp_path):
    assert evaluation_translation_instruction("official", "en", "el") == OFFICIAL[0].format(
        source_lang="English", target_lang="Modern Greek (1453-)"
    )
    assert evaluation_translation_instruction("package", "en", "el") == (
        "Translate the following sentences from English to Greek."
    )
    [flores] = PaperBenchmarks(languages=["el"], flores_dir=str(tmp_path)).evaluations()
    assert (flores.instruction, flores.max_new_tokens, flores.num_beams) == ("official", 512, 1)
    assert flores.directions == ["en-el", "el-en"]


# --- 2. U+FEFF in the official QA prompt -------------------------------------------------------
def test_the_official_qa_prompt_keeps_a_leading_bom(tmp_path):
    path = squad_file(tmp_path / "xquad.zh.json", "\ufeff北京是中国的首都。", [("首都？", "北京")])
    official = QAEvaluation(files={"zh": str(path)}, prompt_style="official", off_target=False)
    labelled = QAEvaluation(files={"zh": str(path)}, prompt_style="labelled", off_target=False)
    for evaluation in (official, labelled):
        evaluation.prepare()
    [kept] = official.sets["xquad.zh"].examples
    [stripped] = labelled.sets["xquad.zh"].examples
    assert qa_fields(kept, "official")[1].encode("utf-8") == (
        "段落: \ufeff北京是中国的首都。\n问题: 首都？\n答案: ".encode("utf-8")
    )
    assert stripped.context == "北京是中国的首都。"
    forced = QAEvaluation(files={"zh": str(path)}, prompt_style="official", keep_bom=False)
    forced.prepare()
    assert forced.sets["xquad.zh"].examples[0].context == "北京是中国的首都。"


@pytest.mark.skipif(not (SHARED / "xquad").is_dir(), reason="the shared XQuAD is not here")
def test_real_xquad_prompts_differ_only_by_the_kept_bom():
    for lang, low, high in (("en", 0, 0), ("zh", 9, 47), ("de", 9, 47)):
        kept = read_squad(xquad_file(SHARED / "xquad", lang), lang, keep_bom=True)
        stripped = read_squad(xquad_file(SHARED / "xquad", lang), lang)
        differ = [k for k, s in zip(kept, stripped) if k.context != s.context]
        assert len(kept) == 1190 and low <= len(differ) <= high, (lang, len(differ))
        assert all(k.context == "\ufeff" + s.context for k, s in zip(kept, stripped) if k != s)


# --- 3. the template of evaluate --paper, spBLEU both ways -------------------------------------
def test_evaluate_paper_prompts_in_the_official_template_and_says_why(tiny_model, tmp_path):
    xquad = tmp_path / "xquad"
    xquad.mkdir()
    squad_file(xquad / "xquad.zh.json", "北京是中国的首都。", [("中国的首都是哪里？", "北京")])
    arguments = ["evaluate", "--model", tiny_model, "--paper.languages", "[zh]"]
    arguments += ["--paper.xquad_dir", str(xquad)]
    main(arguments + ["--output_dir", str(tmp_path / "paper")])
    report = json.loads((tmp_path / "paper" / "report.json").read_text())
    assert report["template"]["template"] == "alpaca_official"
    assert (
        "paper mode" in report["template"]["source"] and "run.json" in report["template"]["source"]
    )
    assert report["templates"]["xquad"]["template"] == "alpaca_official"
    assert (
        "Prompts in the `alpaca_official` template"
        in (tmp_path / "paper" / "paper_table.md").read_text()
    )
    main(arguments + ["--output_dir", str(tmp_path / "chosen"), "--template", "alpaca"])
    report = json.loads((tmp_path / "chosen" / "report.json").read_text())
    assert report["template"] == {"template": "alpaca", "source": "--template"}


def test_the_paper_table_has_spbleu_both_ways():
    report = {"model": "m", "metrics": {"flores/en-zh/spbleu": 20.0, "flores/zh-en/spbleu": 25.0}}
    table = paper_table(report, ["zh"])
    assert table["columns"] == ["en-x spBLEU", "x-en spBLEU"]
    assert table["rows"][0]["x-en spBLEU"] == 25.0


# --- 4. the judges as the paper ran them --------------------------------------------------------
def faireval_settings(server: JudgeServer, **overrides) -> JudgeSettings:
    values = dict(
        base_url=server.url,
        model="gpt-3.5-turbo",
        api_key_env=None,
        timeout=5.0,
        max_attempts=2,
        backoff_base=0.01,
        temperature=1.0,
        max_tokens=512,
        samples=3,
        concurrency=1,
    )
    return JudgeSettings(**{**values, **overrides})


def chinese(text: str) -> str | None:
    """A language gate for the test: Chinese characters make Chinese, Latin letters English."""
    if any("\u4e00" <= c <= "\u9fff" for c in text):
        return "zh"
    return "en" if any(c.isalpha() for c in text) else None


def test_faireval_asks_the_papers_prompt_in_both_orders_behind_a_language_gate():
    items = [
        JudgeItem(
            "写一首诗。", "", "zh", "秋天 GOOD", "秋天"
        ),  # both Chinese: judged, model better
        JudgeItem("写一首诗。", "", "zh", "autumn GOOD", "秋天"),  # model in English: it loses
        JudgeItem("写一首诗。", "", "zh", "秋天", "autumn"),  # the other model in English: win
        JudgeItem("写一首诗。", "", "zh", "autumn", "fall"),  # both off: a tie
    ]
    with JudgeServer() as server, JudgeClient(faireval_settings(server)) as client:
        run = judge_items(items, "faireval", client, chinese)
        bodies = server.bodies
    assert len(bodies) == 2  # only the first item passes the gate; both orders asked
    question = "写一首诗。\n"
    assert bodies[0]["messages"] == [
        {
            "role": "system",
            "content": "You are a helpful and precise assistant for checking the quality of the answer.",
        },
        {
            "role": "user",
            "content": FAIREVAL_USER.format(
                question=question, answer_1="秋天 GOOD", answer_2="秋天"
            ),
        },
    ]
    assert bodies[1]["messages"][1]["content"] == FAIREVAL_USER.format(
        question=question, answer_1="秋天", answer_2="秋天 GOOD"
    )
    assert all((b["n"], b["temperature"], b["max_tokens"]) == (3, 1.0, 512) for b in bodies)
    assert [r["outcome"] for r in run.records] == ["win", "loss", "win", "tie"]
    assert run.records[0]["score"] == [8.0, 3.0] and run.records[1]["score"] == [0.0, 1.0]
    assert run.scores["win_rate"] == pytest.approx(100 * 2.5 / 4)


def test_judge_evaluation_faireval_takes_the_papers_sampling_and_another_models_answers(tmp_path):
    files = tmp_path / "zh.jsonl"
    files.write_text(json.dumps({"instruction": "写一首诗。", "input": ""}, ensure_ascii=False))
    answers = tmp_path / "other.jsonl"
    answers.write_text(json.dumps({"instruction": "写一首诗。", "input": "", "prediction": "秋天"}))
    evaluation = JudgeEvaluation(
        files={"zh": str(files)},
        base_url="http://127.0.0.1:1/v1",
        model="gpt-3.5-turbo",
        mode="faireval",
        references={"zh": str(answers)},
        api_key_env=None,
    )
    assert (
        evaluation.judge.temperature,
        evaluation.judge.max_tokens,
        evaluation.judge.samples,
    ) == (
        1.0,
        512,
        3,
    )
    evaluation.prepare()
    assert evaluation.sets["zh"].references == ["秋天"] and evaluation.gate is not None
    with pytest.raises(ValueError, match="give its answers"):
        JudgeEvaluation(files={"zh": str(files)}, base_url="u", model="m", mode="faireval")


def test_xquad_correctness_judge_asks_yes_or_no_with_the_papers_prompt(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    cases = [("Context: c\nQuestion: q\nAnswer: ", "GOOD"), ("ctx", ""), ("ctx", "wrong")]
    with JudgeServer() as server:
        with JudgeClient(faireval_settings(server, temperature=0.0, samples=1)) as client:
            run = judge_correctness(cases, client)
        assert [b["messages"] for b in server.bodies] == [
            [{"role": "user", "content": CORRECTNESS.format(*cases[0])}],
            [{"role": "user", "content": CORRECTNESS.format(*cases[2])}],
        ]
        assert [r["correct"] for r in run.records] == [True, False, False]
        assert run.score == pytest.approx(100 / 3)

        path = squad_file(
            tmp_path / "xquad.zh.json",
            "\ufeff北京是首都。",
            [("首都？", "北京"), ("哪里？", "北京")],
        )
        evaluation = QAEvaluation(
            files={"zh": str(path)},
            prompt_style="official",
            max_new_tokens=3,
            batch_size=2,
            judge_base_url=server.url,
            judge_model="gpt-3.5-turbo",
            judge_api_key_env=None,
            judge_questions=1,
        )
        evaluation.prepare()
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        result = evaluation.run(model, load_tokenizer(tiny_model))
        asked = [b for b in server.bodies[2:]]
    assert "xquad.zh/judge_correct" in {k.split("/", 1)[1] for k in result.metrics}
    assert result.metrics["qa/xquad.zh/judge_failed"] == 0.0
    assert len(asked) <= 1  # the first question only (none when its answer is empty)
    for body in asked:
        assert (
            "Context: 段落: \ufeff北京是首都。\n问题: 首都？\n答案: \nAnswer: "
            in (body["messages"][0]["content"])
        )


# --- 5. the probe pooled as embedding.py pools -------------------------------------------------
def test_official_pooling_is_the_masked_sum_over_the_alpaca_prompt_by_padded_length(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    sentences = ["the dog sees a cat.", "a bird finds the big old tree near the river."]
    pooled = pooled_hidden_states(model, tokenizer, sentences, batch_size=2, pooling="official")
    prompts = [
        "Below is an instruction that describes a task. Write a response that appropriately "
        f"completes the request.\n\n### Instruction:\n{s}\n\n### Response:"
        for s in sentences
    ]
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    assert all(row[0] == tokenizer.bos_token_id for row in ids)
    width = max(map(len, ids))
    input_ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)], mask[row, : len(tokens)] = torch.tensor(tokens), 1
    with torch.no_grad():
        states = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    expected = torch.stack(
        [(h * mask[..., None]).sum(dim=1) / width for h in states.hidden_states]
    ).float()
    assert torch.allclose(pooled, expected, atol=1e-5)
    sentence = pooled_hidden_states(model, tokenizer, sentences, batch_size=2)
    assert not torch.allclose(pooled, sentence)
