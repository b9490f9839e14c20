"""Stop rules of batched generation: a model that repeats itself or goes on past the first line
ends early, each row on its own, and the rows each rule ended are counted and logged."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lightning_xllama.callbacks import TranslationEvaluation
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.evaluation.generation import generate
from lightning_xllama.runtime.hf_loading import load_tokenizer

PROMPTS = ["the cat", "a dog", "one bird"]  # ends in EOS, babbles, writes two lines
LIMIT = 24


def visible_tokens(tokenizer, count: int) -> list[int]:
    """Ids of ``count`` ordinary tokens that decode to visible text without a line break."""
    ids = []
    for i in range(len(tokenizer) - 1, 0, -1):
        text = tokenizer.decode([i], skip_special_tokens=True)
        if text.strip() and "\n" not in text and i not in tokenizer.all_special_ids:
            ids.append(i)
        if len(ids) == count:
            return ids
    raise AssertionError("the tokenizer has too few ordinary tokens")


def scripted_model(tokenizer, last_tokens: list[int]) -> LlamaForCausalLM:
    """A real LLaMA whose next token depends on the current token only (attention and MLP write
    nothing), with greedy transitions set by hand: the first prompt ends in EOS at once, the second
    loops A B C A B C..., the third writes M, a line break, M, a line break... Every other token
    leads into the A B C loop."""
    eos, newline = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<0x0A>")
    a, b, c, m = visible_tokens(tokenizer, 4)
    assert not {a, b, c, m, newline} & set(last_tokens), "pick other prompts"
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    basis = torch.eye(16)
    d, to_eos, to_m = 0, 1, 2  # directions of the embeddings; the loop tokens get 3.. below
    code = {a: 3, b: 4, c: 5, m: 6, newline: 7}
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = model.model.embed_tokens.weight
        embed.copy_(basis[d].expand_as(embed))
        for token, direction in code.items():
            embed[token] = basis[direction]
        embed[last_tokens[0]], embed[last_tokens[2]] = basis[to_eos], basis[to_m]
        head = model.lm_head.weight
        head.zero_()
        # next token = the head row that matches the current token's direction
        head[eos] = 10 * basis[to_eos]
        head[a] = 10 * (basis[d] + basis[code[c]])
        head[b] = 10 * basis[code[a]]
        head[c] = 10 * basis[code[b]]
        head[m] = 10 * (basis[to_m] + basis[code[newline]])
        head[newline] = 10 * basis[code[m]]
    return model


@pytest.fixture(scope="module")
def babbler(tiny_model):
    tokenizer = load_tokenizer(tiny_model, padding_side="left")
    last = [tokenizer(p)["input_ids"][-1] for p in PROMPTS]
    assert len(set(last)) == 3
    return scripted_model(tokenizer, last), tokenizer


def test_without_stop_rules_a_babbling_row_runs_to_the_limit(babbler):
    model, tokenizer = babbler
    counts = {}
    outputs = generate(model, tokenizer, PROMPTS, batch_size=3, max_new_tokens=LIMIT, counts=counts)
    assert outputs[0] == ""  # EOS at once
    assert len(tokenizer(outputs[1], add_special_tokens=False)["input_ids"]) >= LIMIT - 1
    assert outputs[2].count("\n") >= 5
    assert counts == {"stopped_newline": 0, "stopped_repeating": 0, "hit_limit": 2}


def test_each_row_stops_on_its_own_rule_and_is_counted(babbler):
    model, tokenizer = babbler
    counts = {}
    outputs = generate(
        model,
        tokenizer,
        PROMPTS,
        batch_size=3,
        max_new_tokens=LIMIT,
        stop_at_newline=True,
        repeat_ngram=3,
        repeat_times=3,
        counts=counts,
    )
    a, b, c, m = (tokenizer.decode([i]) for i in visible_tokens(tokenizer, 4))
    assert outputs[0] == ""
    # the A B C loop ends once its latest 3 tokens occurred 3 times: 3 turns and 2 more tokens
    babbled = tokenizer(outputs[1], add_special_tokens=False)["input_ids"]
    assert 9 <= len(babbled) <= 11 < LIMIT
    assert outputs[2] == m.strip()  # the first line only
    assert counts == {"stopped_newline": 1, "stopped_repeating": 1, "hit_limit": 0}
    # one rule alone: the newline row runs on until the repetition guard ends it too
    counts = {}
    generate(
        model,
        tokenizer,
        PROMPTS,
        batch_size=3,
        max_new_tokens=LIMIT,
        repeat_ngram=2,
        repeat_times=4,
        counts=counts,
    )
    assert counts == {"stopped_newline": 0, "stopped_repeating": 2, "hit_limit": 0}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"repeat_ngram": 3}, "needs both repeat_ngram"),
        ({"repeat_ngram": 2, "repeat_times": 1}, "at least 2"),
        ({"repeat_ngram": -1, "repeat_times": 2}, "repeat_ngram must be a whole number >= 0"),
        ({"stop_at_newline": True, "num_beams": 2}, "need num_beams 1"),
    ],
)
def test_stop_rule_settings_are_checked_when_the_callback_is_built(tiny_data, settings, message):
    test = str(DataLayout(tiny_data).translation_test("syn_far"))
    with pytest.raises(ValueError, match=message):
        TranslationEvaluation(directions=["en-syn_far"], test_prefix=test, **settings)


def test_translation_evaluation_logs_the_rows_each_rule_ended(babbler, tiny_data):
    model, tokenizer = babbler
    test = str(DataLayout(tiny_data).translation_test("syn_far"))
    evaluation = TranslationEvaluation(
        directions=["en-syn_far"],
        test_prefix=test,
        max_samples=4,
        batch_size=4,
        max_new_tokens=LIMIT,
        off_target=False,
        repeat_ngram=2,
        repeat_times=3,
    )
    evaluation.prepare()
    metrics = evaluation.run(model, tokenizer).metrics
    assert metrics["translation/en-syn_far/stopped_repeating"] == 4
    assert metrics["translation/en-syn_far/stopped_newline"] == 0
    assert metrics["translation/en-syn_far/hit_limit"] == 0
    # off by default: no counts among the scores
    default = TranslationEvaluation(
        directions=["en-syn_far"], test_prefix=test, max_samples=4, off_target=False
    )
    default.prepare()
    assert not any("stopped" in key for key in default.run(model, tokenizer, False).metrics)
