"""The families' tokenizers: which token pads (and that the EOS closing each response is still
learned when a reserved token or the EOS itself pads), and the ``chat`` template in the
tokenizer's own chat template, with one BOS in training and in generation alike."""

from __future__ import annotations

import pytest
import torch
from families import FAMILIES, byte_level_tokenizer, corpus
from training_utils import first_examples, tiny_datamodule
from transformers import AutoModelForCausalLM

from lightning_xllama.data.encoding import IGNORE_INDEX, encode_examples
from lightning_xllama.data.sources import Example
from lightning_xllama.evaluation.generation import generate
from lightning_xllama.prompts import render_prompt
from lightning_xllama.runtime.hf_loading import load_tokenizer, pad_token_choice

PADS = {
    "llama2": ("<unk>", "its UNK token pads"),
    "llama3": ("<|reserved_special_token_0|>", "its first reserved special token pads"),
    "mistral": ("<unk>", "its UNK token pads"),
    "qwen2": ("<|endoftext|>", "the tokenizer's own pad token"),
    "gemma": ("<pad>", "the tokenizer's own pad token"),
    "gemma2": ("<pad>", "the tokenizer's own pad token"),
}


@pytest.fixture(scope="module")
def eos_padded(tiny_data, tmp_path_factory) -> str:
    """A byte-level BPE with neither pad, UNK nor reserved tokens (GPT-2's kind): EOS pads."""
    out = tmp_path_factory.mktemp("eos_padded")
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    byte_level_tokenizer(
        corpus(tiny_data),
        out,
        specials,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
    )
    return str(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_pads_with_its_own_pad_unk_or_a_reserved_token(family, family_models):
    tokenizer = load_tokenizer(family_models[family])
    choice = pad_token_choice(tokenizer)
    token, reason = PADS[family]
    assert choice["token"] == token and reason in choice["reason"]
    assert choice["id"] == tokenizer.convert_tokens_to_ids(token) != tokenizer.eos_token_id


def test_without_pad_unk_or_reserved_tokens_the_eos_pads(eos_padded):
    tokenizer = load_tokenizer(eos_padded)
    choice = pad_token_choice(tokenizer)
    assert choice["token"] == "<|end_of_text|>" == tokenizer.eos_token
    assert "its EOS token pads" in choice["reason"] and "still learned" in choice["reason"]


@pytest.mark.parametrize("batching", ["pad", "pack"])
@pytest.mark.parametrize("padded_with", ["eos", "reserved"])
def test_the_eos_closing_each_response_is_learned(
    padded_with, batching, eos_padded, family_models, tiny_data
):
    """Padding is labelled -100 by position: an EOS that pads is not taken for padding where it
    closes a response, and neither is a reserved pad token."""
    tokenizer = eos_padded if padded_with == "eos" else family_models["llama3"]
    datamodule = tiny_datamodule(tokenizer, tiny_data, batching=batching, pad_to_multiple_of=64)
    eos = datamodule.tokenizer.eos_token_id
    examples = first_examples(datamodule, 4)
    assert all(e["labels"][-1] == eos for e in examples)
    batch = datamodule.collate_fn()(examples)
    labels = batch["labels"]
    assert int((labels == eos).sum()) == len(examples)  # each closing EOS keeps its label
    pads = int((batch["input_ids"] == datamodule.tokenizer.pad_token_id).sum())
    assert pads > (len(examples) if padded_with == "eos" else 0)  # the batch holds padding
    closing = torch.nonzero(labels.flatten() == eos).flatten()
    assert set((closing - 1).tolist()) <= set(batch["loss_positions"].tolist())  # and is trained
    assert all(labels.flatten()[p + 1] != IGNORE_INDEX for p in batch["loss_positions"].tolist())


@pytest.mark.parametrize(
    "family, response, end_of_turn",
    [
        ("llama3", "the cat sleeps.<|eot_id|>", "<|eot_id|>"),
        ("qwen2", "the cat sleeps.<|im_end|>\n", "<|im_end|>"),
    ],
)
def test_chat_template_is_the_tokenizers_own_with_one_bos(
    family, response, end_of_turn, family_models
):
    """Training text is the template's, the loss covers the assistant turn and its end-of-turn
    token, generation is prompted with exactly the training prompt's ids and stops at that
    token (a base LLaMA-3's EOS is another one, ``<|end_of_text|>``)."""
    folder = family_models[family]
    tokenizer = load_tokenizer(folder)
    messages = [{"role": "user", "content": "Translate into French.\n\nThe cat sleeps."}]
    expected_prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    (encoded,) = encode_examples(
        tokenizer,
        [Example("Translate into French.", "The cat sleeps.", "the cat sleeps.")],
        256,
        template="chat",
    )
    ids, labels = encoded["input_ids"], encoded["labels"]
    prompt_length = labels.count(IGNORE_INDEX)
    assert labels[:prompt_length] == [IGNORE_INDEX] * prompt_length
    assert tokenizer.decode(ids[:prompt_length]) == expected_prompt
    assert tokenizer.decode(ids[prompt_length:]) == response
    end_of_turn_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    assert end_of_turn_id in labels[prompt_length:]
    bos = tokenizer.bos_token_id
    assert ids.count(bos) == (1 if family == "llama3" else 0) and (bos is None) == (
        family == "qwen2"
    )
    if bos is not None:
        assert ids[0] == bos

    model = AutoModelForCausalLM.from_pretrained(folder)
    seen = []
    original = model.generate

    def recording_generate(input_ids, attention_mask, **kwargs):
        seen.append((input_ids[attention_mask.bool()].tolist(), kwargs["eos_token_id"]))
        return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    model.generate = recording_generate
    prompt = render_prompt("Translate into French.", "The cat sleeps.", "chat", tokenizer)
    assert prompt == expected_prompt
    generate(model, tokenizer, [prompt], max_new_tokens=2)
    ((prompt_ids, stop),) = seen
    assert prompt_ids == ids[:prompt_length]
    assert tokenizer.eos_token_id in stop and end_of_turn_id in stop
