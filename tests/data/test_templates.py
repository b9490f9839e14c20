"""Templates: Alpaca by default, the tokenizer's chat template by option, with exact loss masks."""

from __future__ import annotations

import pytest
from training_utils import tiny_datamodule

from lightning_xllama.data.encoding import IGNORE_INDEX, encode_examples
from lightning_xllama.data.sources import Example
from lightning_xllama.prompts import alpaca_prompt, render_prompt
from lightning_xllama.runtime.hf_loading import load_tokenizer

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat_tokenizer(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def test_chat_template_masks_everything_but_the_answer(tiny_model):
    tokenizer = chat_tokenizer(tiny_model)
    example = Example("what is the subject of this sentence?", "the dog sees a cat.", "the dog")
    encoded = encode_examples(tokenizer, [example], max_length=512, template="chat")[0]
    prompt = render_prompt(example.instruction, example.input, "chat", tokenizer)
    assert (
        prompt
        == "<s><|user|>\nwhat is the subject of this sentence?\n\nthe dog sees a cat.<|assistant|>\n"
    )
    trained = [
        t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label != IGNORE_INDEX
    ]
    masked = encoded["input_ids"][: len(encoded["input_ids"]) - len(trained)]
    assert tokenizer.decode(masked) == prompt  # the whole prompt, BOS included, carries no loss
    assert (
        encoded["input_ids"].count(tokenizer.bos_token_id) == 1
    )  # the template's BOS, not a second one
    assert tokenizer.eos_token_id in trained and tokenizer.decode(trained).startswith("the dog</s>")
    assert encoded["labels"][len(masked) :] == trained

    alpaca = encode_examples(tokenizer, [example], max_length=512)[0]  # the default is unchanged
    assert tokenizer.decode(alpaca["input_ids"]).startswith(
        "<s> " + alpaca_prompt(example.instruction, example.input)[:20]
    )


def test_chat_template_option_needs_a_template_and_reaches_predict(tiny_model, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="has none: use template 'alpaca'"):
        encode_examples(load_tokenizer(tiny_model), [Example("a", "", "b")], 64, template="chat")
    datamodule = tiny_datamodule(tiny_model, tiny_data, template="chat", cache_dir=str(tmp_path))
    datamodule._tokenizer = chat_tokenizer(tiny_model)
    assert datamodule.prompt("translate this.", "the dog.").endswith("<|assistant|>\n")
    datamodule.setup("fit")
    first = datamodule.train_examples(1)[0]
    assert (
        first["input_ids"][:2]
        == datamodule.tokenizer("<s><|user|>", add_special_tokens=False)["input_ids"][:2]
    )
