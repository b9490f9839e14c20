"""Packing: several examples a row without attention across their borders, the loss unchanged."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.encoding import encode_examples
from lightning_xllama.data.packing import PackCollator, additive_mask, pack_rows
from lightning_xllama.data.sources import Example
from lightning_xllama.hf_loading import load_tokenizer
from lightning_xllama.model import XLlamaModule
from training_utils import tiny_datamodule

EXAMPLES = [
    Example("what is the subject of this sentence?", "the dog sees a cat.", "the dog"),
    Example("rewrite this sentence with subject and object swapped.", "a king holds the cup.", "the cup holds a king."),
    Example("how many words are in this sentence?", "the girl paints a red boat near the river.", "nine"),
    Example("Translate this text from English into Farish.", "the boy follows a bird.", "лебу борор кен фен."),
]


def test_rows_are_filled_first_fit_by_decreasing_length():
    assert pack_rows([5, 3, 4], None) == [[0, 1, 2]]
    rows = pack_rows([300, 200, 400, 100, 50], 512)
    assert rows == [[2, 3], [0, 1], [4]]
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_logits_and_loss_equal_unpacked_ones(tiny_model, attn_implementation):
    tokenizer = load_tokenizer(tiny_model)
    examples = encode_examples(tokenizer, EXAMPLES, max_length=512)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=attn_implementation).eval()
    batch = PackCollator(tokenizer.pad_token_id)(examples)  # one row, the four examples in order
    assert batch["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    mask = batch["attention_mask"]
    if attn_implementation == "eager":
        mask = additive_mask(mask, torch.float32)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=mask).logits[0]
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      attention_mask=torch.ones_like(batch["input_ids"])).logits[0]
        at = 0
        for example in examples:
            n = len(example["input_ids"])
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[at : at + n], alone, atol=1e-5, rtol=1e-4)
            at += n
        # the test can tell: with a 2D mask of ones the later examples see the earlier ones
        assert not torch.allclose(leaky[at - n : at], alone, atol=1e-3)

    module = XLlamaModule(tiny_model, attn_implementation=attn_implementation)
    module.configure_model()
    with torch.no_grad():
        padded_loss, padded_tokens = module.response_loss(PadCollator(tokenizer.pad_token_id)(examples))
        rows = PackCollator(tokenizer.pad_token_id, pack_length=100)(examples)  # several rows, padded
        assert rows["input_ids"].shape[0] > 1 and (rows["labels"] == -100).any()
        packed_loss, packed_tokens = module.response_loss(rows)
    assert packed_tokens == padded_tokens
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-4, rtol=1e-5)


def test_packed_training_batches_hold_the_same_examples_and_loss_as_padded_ones(tiny_model, tiny_data, tmp_path):
    padded = tiny_datamodule(tiny_model, tiny_data, batch_size=6, cache_dir=str(tmp_path))
    packed = tiny_datamodule(tiny_model, tiny_data, batch_size=6, cache_dir=str(tmp_path), batching="pack")
    for datamodule in (padded, packed):
        datamodule.setup("fit")
    module = XLlamaModule(tiny_model)
    module.configure_model()
    for pad_batch, pack_batch, _ in zip(padded.train_dataloader(), packed.train_dataloader(), range(3)):
        assert pack_batch["input_ids"].shape[0] == 1  # the whole micro-batch in one row
        assert pack_batch["attention_mask"].shape[1:] == (1, pack_batch["input_ids"].shape[1], pack_batch["input_ids"].shape[1])
        assert int(pad_batch["attention_mask"].sum()) == pack_batch["input_ids"].shape[1]  # no padding left
        with torch.no_grad():
            pad_loss, pad_tokens = module.response_loss(pad_batch)
            pack_loss, pack_tokens = module.response_loss(pack_batch)
        assert pad_tokens == pack_tokens
        torch.testing.assert_close(pack_loss, pad_loss, atol=1e-4, rtol=1e-5)
