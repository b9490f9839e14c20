"""The evaluation callbacks' one nested ``generation:`` argument, the flat keys it replaces, and
each evaluation's own defaults, read from YAML the way ``fit`` reads ``trainer.callbacks``."""

from pathlib import Path

import lightning as L
import pytest
import yaml
from jsonargparse import ArgumentParser

from lightning_xllama.callbacks import (
    Generation,
    JudgeEvaluation,
    QAEvaluation,
    TranslationEvaluation,
)

TRANSLATION = {"directions": ["en-de"], "test_prefix": "test"}


def callbacks_from_yaml(tmp_path, callbacks: list[dict]) -> list[L.Callback]:
    """Parse and build ``callbacks`` as LightningCLI builds a config's ``trainer.callbacks``."""
    config = tmp_path / "callbacks.yaml"
    config.write_text(yaml.safe_dump({"callbacks": callbacks}))
    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_argument("--callbacks", type=list[L.Callback])
    return parser.instantiate(parser.parse_args(["--config", str(config)])).callbacks


def test_nested_and_flat_generation_keys_build_the_same_evaluation(tmp_path):
    settings = {"batch_size": 4, "max_new_tokens": 40, "repeat_ngram": 3, "repeat_times": 2}
    path = "lightning_xllama.callbacks.TranslationEvaluation"
    nested, flat = callbacks_from_yaml(
        tmp_path,
        [
            {"class_path": path, "init_args": {**TRANSLATION, "generation": settings}},
            {"class_path": path, "init_args": {**TRANSLATION, **settings}},
        ],
    )
    assert nested.generation == flat.generation
    assert nested.generation == Generation(4, 40, 1, False, 3, 2)
    assert (nested.batch_size, nested.max_new_tokens, nested.repeat_ngram) == (4, 40, 3)


def test_a_partial_generation_keeps_the_evaluations_own_defaults(tmp_path):
    translation, qa = callbacks_from_yaml(
        tmp_path,
        [
            {
                "class_path": "lightning_xllama.callbacks.TranslationEvaluation",
                "init_args": {**TRANSLATION, "generation": {"stop_at_newline": True}},
            },
            {
                "class_path": "lightning_xllama.callbacks.QAEvaluation",
                "init_args": {"files": {"de": "qa.json"}, "generation": {"batch_size": 2}},
            },
        ],
    )
    assert translation.generation == Generation(32, 256, 1, True, 0, 0)
    assert qa.generation == Generation(2, 64, 1, False, 0, 0)
    judge = JudgeEvaluation(files={"de": "x.json"}, base_url="http://judge", model="m")
    assert judge.generation == Generation(16, 256, 1, False, 0, 0)


def test_evaluation_settings_other_than_generation_still_reach_the_evaluation(tmp_path):
    (qa,) = callbacks_from_yaml(
        tmp_path,
        [
            {
                "class_path": "lightning_xllama.callbacks.QAEvaluation",
                "init_args": {
                    "files": {"de": "qa.json"},
                    "max_samples": 7,
                    "every_n_validations": 3,
                    "template": "chat",
                    "off_target": False,
                },
            }
        ],
    )
    assert (qa.max_samples, qa.every_n_validations, qa.template, qa.off_target) == (
        7,
        3,
        "chat",
        False,
    )


def test_a_setting_given_nested_and_flat_with_two_values_is_refused():
    with pytest.raises(ValueError) as error:
        TranslationEvaluation(
            **TRANSLATION, generation=Generation(max_new_tokens=40), max_new_tokens=50
        )
    assert str(error.value) == (
        "TranslationEvaluation: max_new_tokens is given twice, as generation.max_new_tokens: 40 "
        "and as max_new_tokens: 50; keep one"
    )
    same = TranslationEvaluation(
        **TRANSLATION, generation=Generation(max_new_tokens=40), max_new_tokens=40
    )
    assert same.max_new_tokens == 40


@pytest.mark.parametrize(
    "generation, message",
    [
        (Generation(repeat_ngram=3), "needs both repeat_ngram"),
        (Generation(batch_size=0), "batch_size"),
        (Generation(num_beams=2, stop_at_newline=True), "need num_beams 1"),
    ],
)
def test_nested_settings_are_checked_like_flat_ones(generation, message):
    with pytest.raises(ValueError, match=message):
        QAEvaluation(files={"de": "qa.json"}, generation=generation)


def test_the_fit_help_documents_generation_and_the_shared_settings_once(capsys):
    from lightning_xllama.commands.main import main

    with pytest.raises(SystemExit):
        main(["fit", "--trainer.callbacks.help", "lightning_xllama.callbacks.QAEvaluation"])
    help_text = capsys.readouterr().out
    assert "--trainer.callbacks.generation" in help_text
    assert "flat spelling of ``generation.max_new_tokens``" in help_text
    assert "run on every N-th validation pass" in help_text


def docs_example(heading: str) -> dict:
    """The names the first Python block under ``heading`` in docs/extending.md defines."""
    text = (Path(__file__).parents[2] / "docs" / "extending.md").read_text()
    block = text.split(f"## {heading}", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    names: dict = {"__name__": "docs_example"}
    exec(compile(block, "docs/extending.md", "exec"), names)
    return names


def test_the_documented_subclass_takes_the_shared_keys_and_generates(tiny_model):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    echo_rate = docs_example("An evaluation that generates")["EchoRate"]
    evaluation = echo_rate(
        ["Say hello.", "Name a colour."],
        generation=Generation(max_new_tokens=4),
        max_samples=2,
        before_training=False,
    )
    assert evaluation.generation == Generation(8, 4, 1, False, 0, 0)
    assert (evaluation.max_samples, evaluation.before_training) == (2, False)
    evaluation.prepare()
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    result = evaluation.run(model, load_tokenizer(tiny_model, padding_side="left"))
    assert 0.0 <= result.metrics["echo/all/echo"] <= 100.0
