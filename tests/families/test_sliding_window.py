"""Sliding-window attention (Mistral; Gemma-2's local layers) in packed rows: each example of a
row sees only its own last ``sliding_window`` tokens, in every attention path that runs here."""

from __future__ import annotations

import pytest
import torch
from families import WINDOW
from training_utils import first_examples, tiny_datamodule
from transformers import AutoModelForCausalLM

from lightning_xllama.data.packing import PackCollator, block_causal_mask
from lightning_xllama.training.attention import packed_attention_inputs, register_attention


@pytest.fixture(scope="module")
def packed_rows(family_models, tiny_data) -> dict[str, tuple[dict, list[list[int]]]]:
    """Per family: one packed row of four examples, and the examples' token ids."""
    rows = {}
    for family in ("mistral", "gemma2"):
        datamodule = tiny_datamodule(family_models[family], tiny_data)
        examples = first_examples(datamodule, 4)
        assert all(len(e["input_ids"]) > 2 * WINDOW for e in examples)  # the window matters
        batch = PackCollator(datamodule.tokenizer.pad_token_id, pad_to_multiple_of=8)(examples)
        rows[family] = batch, [e["input_ids"] for e in examples]
    return rows


@pytest.fixture(scope="module")
def alone(family_models, packed_rows):
    """Logits of each example alone, by family and attention implementation (computed once)."""
    cache: dict[tuple[str, str], list[torch.Tensor]] = {}

    def logits(family: str, implementation: str) -> list[torch.Tensor]:
        if (family, implementation) not in cache:
            model = AutoModelForCausalLM.from_pretrained(
                family_models[family], attn_implementation=implementation
            )
            with torch.no_grad():
                cache[family, implementation] = [
                    model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
                    for ids in packed_rows[family][1]
                ]
        return cache[family, implementation]

    return logits


def packed_logits(folder: str, implementation: str, batch: dict, device: str = "cpu"):
    register_attention()
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation)
    inputs = packed_attention_inputs(batch, model.config, torch.float32)
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    with torch.no_grad():
        logits = model.to(device)(
            input_ids=batch["input_ids"].to(device), **inputs, use_cache=False
        ).logits
    return logits[0].cpu()


def assert_each_example_alone(packed: torch.Tensor, examples, references, atol=2e-5) -> None:
    at = 0
    for ids, reference in zip(examples, references):
        torch.testing.assert_close(packed[at : at + len(ids)], reference, atol=atol, rtol=1e-4)
        at += len(ids)


@pytest.mark.parametrize("implementation", ["sdpa_varlen", "sdpa", "eager"])
@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_packed_row_gives_each_examples_own_windowed_logits(
    family_models, packed_rows, alone, family, implementation
):
    """The reference is each example alone, where transformers applies the window itself: under
    eager attention, which also applies Gemma-2's score capping (sdpa_varlen does; plain sdpa,
    transformers' own, drops it, so it is compared with itself)."""
    batch, examples = packed_rows[family]
    packed = packed_logits(family_models[family], implementation, batch)
    reference = alone(family, "sdpa" if implementation == "sdpa" else "eager")
    assert_each_example_alone(packed, examples, reference)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs CUDA: runs the flex kernel on the GPU (compiling it on CPU takes minutes)",
)
@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_flex_attention_keeps_the_window_in_packed_rows(family_models, packed_rows, alone, family):
    """FlexAttention gets the window (and Gemma-2's capping) from transformers' own mask and
    score functions, built from the position ids."""
    batch, examples = packed_rows[family]
    packed = packed_logits(family_models[family], "flex_attention", batch, "cuda")
    assert_each_example_alone(packed, examples, alone(family, "eager"), atol=1e-4)


def test_the_window_bands_the_block_mask():
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
    mask = block_causal_mask(positions, sliding_window=2)[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],
            [0, 1, 1, 0, 0, 0, 0],
            [0, 0, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    with pytest.raises(ValueError, match="sliding_window must be a whole number >= 1, got 0"):
        block_causal_mask(positions, sliding_window=0)


def test_sdpa_varlen_caps_gemma2_scores_outside_packing_too(family_models):
    """Padded batches and generation (a causal or padding mask, a KV cache) under ``sdpa_varlen``
    give eager attention's logits and tokens: Gemma-2's soft-capping is not dropped there either,
    so a model is evaluated as it was trained."""
    register_attention()
    folder = family_models["gemma2"]
    models = {
        i: AutoModelForCausalLM.from_pretrained(folder, attn_implementation=i)
        for i in ("sdpa_varlen", "eager")
    }
    input_ids = torch.arange(3, 3 + 2 * 30).reshape(2, 30)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :7] = 0  # left padding, as generation pads
    with torch.no_grad():
        varlen, eager = (
            m(input_ids=input_ids, attention_mask=attention_mask).logits for m in models.values()
        )
    torch.testing.assert_close(varlen[0], eager[0])
    torch.testing.assert_close(varlen[1, 7:], eager[1, 7:])
    varlen, eager = (
        m.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=20,
            do_sample=False,
            pad_token_id=0,
        )
        for m in models.values()
    )
    assert torch.equal(varlen, eager)
