"""The paper's QA score as the headline, the official prompt form, and one template per model.

1. QA: the paper counts an answer when the gold answer, lower-cased, is inside the whole
   lower-cased output (x-LLM ``eval/xquad.match.py``); that is ``paper_match``, the headline.
2. Prompt: the official ``PROMPT_DICT`` ends at ``### Response:``; ``alpaca_official`` is that
   form, for training and evaluation, and the QA ``official`` style is the paper's QA layout.
3. Every evaluation prompts in the template the model was trained with (DataModule, run.json).
"""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import QAEvaluation, TranslationEvaluation
from lightning_xllama.callbacks.base import trained_template
from lightning_xllama.callbacks.qa import qa_answer, qa_prompt
from lightning_xllama.commands.evaluate import evaluate
from lightning_xllama.commands.main import main
from lightning_xllama.data.encoding import IGNORE_INDEX, encode_examples
from lightning_xllama.data.eval_sets import QAExample
from lightning_xllama.data.sources import Example
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.evaluation import generation
from lightning_xllama.evaluation.qa_metrics import exact_match, paper_match
from lightning_xllama.prompts import (
    ALPACA_NO_INPUT,
    ALPACA_OFFICIAL_NO_INPUT,
    ALPACA_OFFICIAL_WITH_INPUT,
    ALPACA_WITH_INPUT,
    Template,
    render_prompt,
)
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.runtime.run_record import write_run_record
from lightning_xllama.training.module import XLlamaModule

# x-LLM train.py, PROMPT_DICT, verbatim (the paper's training and inference prompt)
OFFICIAL_PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# (language, context, question, gold, output): the answer inside a sentence
IN_A_SENTENCE = [
    ("zh", "北京是中国的首都。", "中国的首都是哪里？", "北京", "答案是北京。"),
    ("hi", "दिल्ली भारत की राजधानी है।", "भारत की राजधानी क्या है?", "दिल्ली", "उत्तर है दिल्ली।"),
    (
        "tr",
        "Ankara Türkiye'nin başkentidir.",
        "Türkiye'nin başkenti neresidir?",
        "Ankara",
        "Cevap Ankara'dır.",
    ),
]


def write_squad(path: Path, rows: list[tuple[str, str, list[str]]]) -> Path:
    """A SQuAD-format file with one paragraph per (context, question, golds)."""
    paragraphs = [
        {
            "context": context,
            "qas": [{"id": f"q{i}", "question": question, "answers": [{"text": g} for g in golds]}],
        }
        for i, (context, question, golds) in enumerate(rows)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{"paragraphs": paragraphs}]}, ensure_ascii=False))
    return path


class GenerationSpy:
    """Records what reaches generation: the prompt strings, each row's token ids as the model gets
    them (left padding removed) and ``max_new_tokens``; the real generation still runs."""

    def __init__(self, monkeypatch):
        self.prompts: list[str] = []
        self.input_ids: list[list[int]] = []
        self.max_new_tokens: list[int] = []
        real = generation.generate

        def spy(model, tokenizer, prompts, *args, **kwargs):
            self.prompts.extend(prompts)
            real_generate = model.generate

            def model_generate(input_ids, attention_mask, **options):
                for row, mask in zip(input_ids, attention_mask):
                    self.input_ids.append(row[mask.bool()].tolist())
                self.max_new_tokens.append(options["max_new_tokens"])
                return real_generate(input_ids=input_ids, attention_mask=attention_mask, **options)

            monkeypatch.setattr(model, "generate", model_generate)
            try:
                return real(model, tokenizer, prompts, *args, **kwargs)
            finally:
                monkeypatch.delattr(model, "generate")

        monkeypatch.setattr(generation, "generate", spy)


@pytest.fixture(scope="module")
def chat_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model with a chat template in its tokenizer files (a chat-tuned model's folder)."""
    folder = tmp_path_factory.mktemp("chat_model") / "model"
    shutil.copytree(tiny_model, folder)
    tokenizer = load_tokenizer(str(folder))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    assert load_tokenizer(str(folder)).chat_template == CHAT_TEMPLATE
    return str(folder)


# --- 1. the paper's QA score ---------------------------------------------------------------
@pytest.mark.parametrize("lang, context, question, gold, output", IN_A_SENTENCE)
def test_an_answer_inside_a_sentence_is_a_paper_match(lang, context, question, gold, output):
    assert paper_match(output, gold) == 1.0
    assert paper_match(output, ["nothing", gold]) == 1.0  # any of the gold answers
    answer = qa_answer(output, "", lang)
    assert exact_match(answer, gold, lang, "squad") == 0.0  # EM, the old headline, misses it
    assert exact_match(answer, gold, lang, "mlqa") == 0.0


def test_paper_match_is_the_official_substring_check():
    assert paper_match("The Capital Is PARIS.", "paris") == 1.0  # lower-cased both sides
    assert paper_match("Let me think.\nIt is 北京", "北京") == 1.0  # the whole output, any line
    assert paper_match("the year 1000", "10") == 1.0  # a plain substring, as the script does
    assert paper_match("the US", "U.S.") == 0.0  # no normalisation beyond lower-casing
    assert paper_match("Paris", " Paris \n") == 1.0  # gold answers stripped, as the loader does
    assert paper_match("", "Paris") == 0.0
    with pytest.raises(ValueError, match="at least one gold"):
        paper_match("x", [])


def test_paper_match_is_the_qa_headline(tmp_path, monkeypatch):
    """XQuAD sets whose answers sit inside sentences: paper_match 100 while EM is 0, logged as
    val/qa/xquad-{lang}/paper_match, shown in the progress bar, first in the table; answers get
    64 new tokens by default."""
    outputs = {question: output for _, _, question, _, output in IN_A_SENTENCE}
    for lang, context, question, gold, _ in IN_A_SENTENCE:
        write_squad(tmp_path / "xquad" / f"xquad.{lang}.json", [(context, question, [gold])])
    lengths = []

    def canned(model, tokenizer, prompts, batch_size, max_new_tokens, num_beams, sharded, **stops):
        lengths.append(max_new_tokens)
        return [next(o for q, o in outputs.items() if q in prompt) for prompt in prompts]

    monkeypatch.setattr("lightning_xllama.callbacks.base.generate_on_all_ranks", canned)
    callback = QAEvaluation(
        languages=["zh", "hi", "tr"], xquad_dir=str(tmp_path / "xquad"), off_target=False
    )
    callback.prepare()
    result = callback.run(torch.nn.Linear(1, 1), tokenizer=None)
    for lang in ("zh", "hi", "tr"):
        key = f"qa/xquad-{lang}"
        assert result.metrics[f"{key}/paper_match"] == 100.0
        assert result.metrics[f"{key}/squad/exact_match"] == 0.0
        assert result.metrics[f"{key}/mlqa/exact_match"] == 0.0
        assert result.metrics[f"{key}/exact_match"] == 0.0  # XQuAD's official (SQuAD) rules
        assert result.samples[f"xquad-{lang}"][0]["paper_match"] == 1
        assert result.details[f"xquad-{lang}"]["headline"] == "paper_match"
    assert lengths == [64, 64, 64]
    assert callback.progress_bar_metric == "paper_match"
    assert "val/qa/xquad-zh/paper_match".split("/", 3)[3:] == [callback.progress_bar_metric]
    table = callback.markdown(result, {}, tmp_path)
    assert table.startswith("| set | paper_match | exact_match | f1 | contains |")
    assert QAEvaluation(files={"zh": "a.json"}, max_new_tokens=8).max_new_tokens == 8


# --- 2. the official prompt ----------------------------------------------------------------
def test_official_alpaca_is_the_package_text_without_the_last_newline():
    assert ALPACA_OFFICIAL_WITH_INPUT == OFFICIAL_PROMPT_DICT["prompt_input"]
    assert ALPACA_OFFICIAL_NO_INPUT == OFFICIAL_PROMPT_DICT["prompt_no_input"]
    for package, official in (
        (ALPACA_WITH_INPUT, ALPACA_OFFICIAL_WITH_INPUT),
        (ALPACA_NO_INPUT, ALPACA_OFFICIAL_NO_INPUT),
    ):
        assert package.endswith("### Response:\n") and official.endswith("### Response:")
        assert official.encode() == package.encode()[: -len(b"\n")]
    assert render_prompt("Name a colour.", "", "alpaca_official") == OFFICIAL_PROMPT_DICT[
        "prompt_no_input"
    ].format(instruction="Name a colour.")
    assert render_prompt("Translate.", "a dog", "alpaca_official") == OFFICIAL_PROMPT_DICT[
        "prompt_input"
    ].format(instruction="Translate.", input="a dog")
    assert "alpaca_official" in typing.get_args(Template)  # the DataModule's `template` type
    with pytest.raises(ValueError, match="unknown template 'official'"):
        render_prompt("x", "", "official")


def test_official_template_trains_as_the_official_code_tokenises(tiny_model):
    """The official train.py tokenises prompt + output + EOS text as one string (BOS added) and
    masks as many tokens as the prompt alone has: the same ids and labels here."""
    tokenizer = load_tokenizer(tiny_model)
    example = Example("translate this.", "the dog sees a cat.", "the dog")
    [encoded] = encode_examples(tokenizer, [example], 512, template="alpaca_official")
    source = OFFICIAL_PROMPT_DICT["prompt_input"].format(
        instruction=example.instruction, input=example.input
    )
    official = tokenizer(source + example.output + tokenizer.eos_token)["input_ids"]
    source_len = len(tokenizer(source)["input_ids"])
    assert encoded["input_ids"] == official
    assert encoded["labels"] == [IGNORE_INDEX] * source_len + official[source_len:]
    decoded = tokenizer.decode(encoded["input_ids"], skip_special_tokens=True)
    assert decoded.endswith("### Response:the dog")  # nothing between the colon and the answer
    [package] = encode_examples(tokenizer, [example], 512, template="alpaca")  # unchanged
    assert "### Response:\n" in tokenizer.decode(package["input_ids"], skip_special_tokens=True)


def test_the_datamodule_trains_and_predicts_with_the_official_template(
    tiny_model, tiny_data, tmp_path
):
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, template="alpaca_official", cache_dir=str(tmp_path)
    )
    assert datamodule.prompt("translate this.", "the dog.") == OFFICIAL_PROMPT_DICT[
        "prompt_input"
    ].format(instruction="translate this.", input="the dog.")
    datamodule.setup("fit")
    first = datamodule.train_examples(1)[0]
    text = datamodule.tokenizer.decode(first["input_ids"], skip_special_tokens=True)
    assert "### Response:\n" not in text and "### Response:" in text


def test_official_qa_layout_in_the_target_language():
    example = QAExample("1", " 北京是中国的首都。", "中国的首都是哪里？ ", ("北京",), "zh")
    # what x-LLM's data/xquad/xquad.py and inference.py give the model for this question
    official = OFFICIAL_PROMPT_DICT["prompt_input"].format(
        instruction="请根据以下段落，回答问题",
        input="段落: 北京是中国的首都。\n问题: 中国的首都是哪里？\n答案: ",
    )
    assert qa_prompt(example, "official", "alpaca_official") == official
    assert qa_prompt(example, "official").endswith("答案: \n\n### Response:\n")  # package Alpaca
    assert "παράγραφος: " in qa_prompt(QAExample("2", "c", "q", ("a",), "el"), "official")
    # no official words for German: the registry's German words, in the paper's layout
    german = qa_prompt(QAExample("3", "Text.", "Frage?", ("a",), "de"), "official")
    assert "Beantworte die Frage anhand des Kontexts.\n\n### Input:\nKontext: Text.\n" in german
    assert german.endswith("Frage: Frage?\nAntwort: \n\n### Response:\n")
    assert qa_answer("Trả lời: Hà Nội", "", "vi") == "Hà Nội"  # the paper's answer label


def test_official_qa_style_says_whose_words_it_uses(tmp_path):
    files = {
        lang: str(write_squad(tmp_path / f"{lang}.json", [("c.", "q?", ["a"])]))
        for lang in ("zh", "de")
    }
    callback = QAEvaluation(files=files, prompt_style="official", off_target=False)
    with pytest.warns(UserWarning, match=r"no QA prompt words for \['de'\]"):
        callback.prepare()
    assert callback.wording("zh") == "the paper's words"
    assert callback.wording("de") == "the language registry's words"


# --- 3. one template per model -------------------------------------------------------------
def test_callbacks_prompt_in_the_template_the_model_is_trained_with(
    chat_model, tiny_data, monkeypatch
):
    spy = GenerationSpy(monkeypatch)
    test = str(DataLayout(tiny_data).translation_test("syn_far"))
    qa_file = str(DataLayout(tiny_data).qa("syn_far"))
    settings = dict(max_samples=2, batch_size=2, max_new_tokens=2, off_target=False)
    callbacks = [
        TranslationEvaluation(["en-syn_far"], test_prefix=test, **settings),
        QAEvaluation(files={"syn_far": qa_file}, prompt_style="question", **settings),
        QAEvaluation(
            files={"syn_far": qa_file},
            prompt_style="question",
            template="alpaca",  # told otherwise
            name="qa_alpaca",
            **settings,
        ),
    ]
    trainer = quiet_trainer(limit_val_batches=1, callbacks=callbacks)
    datamodule = tiny_datamodule(chat_model, tiny_data, template="chat")
    trainer.validate(XLlamaModule(chat_model), datamodule=datamodule)

    chat = [p for p in spy.prompts if p.startswith("<s><|user|>\n")]
    alpaca = [p for p in spy.prompts if p.startswith("Below is an instruction")]
    assert len(chat) == 4 and len(alpaca) == 2 and len(spy.prompts) == 6
    assert all(p.endswith("<|assistant|>\n") for p in chat)
    assert sum("Translate the following sentences from English to Farish." in p for p in chat) == 2
    assert callbacks[0].template_source == callbacks[1].template_source == "the DataModule"
    # the chat template writes the BOS: the model gets one, as in training
    tokenizer = load_tokenizer(chat_model)
    for ids in spy.input_ids:
        assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id
    first_chat = spy.input_ids[spy.prompts.index(chat[0])]
    assert first_chat == tokenizer(chat[0], add_special_tokens=False)["input_ids"]


def test_trained_template_comes_from_the_datamodule_then_run_json(tmp_path):
    module = SimpleNamespace(hparams={"model_name_or_path": str(tmp_path)})
    no_datamodule = SimpleNamespace(datamodule=None)
    assert trained_template(no_datamodule, module) == ("alpaca", "the default")
    write_run_record({"schema_version": 1, "template": "alpaca_official"}, tmp_path)
    assert trained_template(no_datamodule, module) == (
        "alpaca_official",
        f"{tmp_path}/run.json",
    )
    with_datamodule = SimpleNamespace(
        datamodule=SimpleNamespace(hparams=SimpleNamespace(template="chat"))
    )
    assert trained_template(with_datamodule, module) == ("chat", "the DataModule")
    write_run_record({"schema_version": 1, "template": "chatml"}, tmp_path)
    with pytest.raises(ValueError, match="run.json: template: unknown template 'chatml'"):
        trained_template(no_datamodule, module)


def evaluate_config(model: str, data: Path, out: Path) -> dict:
    return {
        "model": model,
        "output_dir": str(out),
        "evaluations": [
            {
                "class_path": "QAEvaluation",
                "init_args": {
                    "files": {"syn_far": str(DataLayout(data).qa("syn_far"))},
                    "prompt_style": "question",
                    "max_samples": 2,
                    "max_new_tokens": 2,
                    "off_target": False,
                },
            }
        ],
    }


def test_evaluate_prompts_in_the_template_of_the_model_folder(
    chat_model, tiny_data, tmp_path, monkeypatch
):
    folder = tmp_path / "exported"
    shutil.copytree(chat_model, folder)
    write_run_record({"schema_version": 1, "status": "finished", "template": "chat"}, folder)
    spy = GenerationSpy(monkeypatch)
    qa = QAEvaluation(
        files={"syn_far": str(DataLayout(tiny_data).qa("syn_far"))},
        prompt_style="question",
        max_samples=2,
        max_new_tokens=2,
        off_target=False,
    )
    report = evaluate(str(folder), [qa], output_dir=str(tmp_path / "report"))
    assert len(spy.prompts) == 2
    assert all(p.startswith("<s><|user|>\n") and p.endswith("<|assistant|>\n") for p in spy.prompts)
    assert report["templates"] == {"qa": {"template": "chat", "source": f"{folder}/run.json"}}
    assert report["details"]["qa"]["syn_far"]["template"] == "chat"
    assert "Prompts in the `chat` template" in (tmp_path / "report" / "report.md").read_text()

    # --template overrides the folder's record, from the command line too
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump(evaluate_config(str(folder), tiny_data, tmp_path / "r2")))
    main(["evaluate", "--config", str(config), "--template", "alpaca_official"])
    official = spy.prompts[2:]
    assert len(official) == 2 and all(p.endswith("### Response:") for p in official)
    written = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert written["templates"]["qa"] == {"template": "alpaca_official", "source": "--template"}


def test_evaluate_refuses_chat_prompts_without_a_chat_template(
    tiny_model, tiny_data, tmp_path, capsys
):
    folder = tmp_path / "exported"
    shutil.copytree(tiny_model, folder)
    write_run_record({"schema_version": 1, "template": "chat"}, folder)
    (folder / "model.safetensors").unlink()  # it fails before the model is loaded
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump(evaluate_config(str(folder), tiny_data, tmp_path / "r")))
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--config", str(config)])
    assert stopped.value.code == 2 and "no chat template" in capsys.readouterr().err
