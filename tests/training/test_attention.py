"""Attention over packed rows: each ``attn_implementation`` keeps the examples apart, and a
packed batch gives the logits and gradients of the same examples padded."""

from __future__ import annotations

import pytest
import torch
from training_utils import first_examples, tiny_datamodule

from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.packing import PackCollator
from lightning_xllama.training.module import XLlamaModule


@pytest.fixture(scope="module")
def examples(tiny_model, tiny_data) -> tuple[list[dict], int]:
    datamodule = tiny_datamodule(tiny_model, tiny_data)
    return first_examples(datamodule, 6), datamodule.tokenizer.pad_token_id


def loss_and_gradients(tiny_model: str, attn_implementation: str, batch: dict):
    torch.manual_seed(0)
    module = XLlamaModule(tiny_model, attn_implementation=attn_implementation)
    module.configure_model()
    loss_sum, tokens = module.response_loss(batch)
    (loss_sum / tokens).backward()
    return (
        float(loss_sum.detach()),
        int(tokens),
        {n: p.grad.clone() for n, p in module.named_parameters()},
    )


@pytest.mark.parametrize("attn_implementation", ["sdpa_varlen", "sdpa", "eager"])
@pytest.mark.parametrize("pack_length", [None, 160])
def test_packed_batch_trains_like_the_padded_one(
    tiny_model, examples, attn_implementation, pack_length
):
    """Same loss, token count and gradients; ``pack_length`` makes several rows (a multi-row
    batch, each with a padding tail)."""
    encoded, pad = examples
    padded = loss_and_gradients(tiny_model, "sdpa", PadCollator(pad)(encoded))
    batch = PackCollator(pad, pack_length=pack_length, pad_to_multiple_of=8)(encoded)
    if pack_length:
        assert batch["input_ids"].shape[0] > 1
    packed = loss_and_gradients(tiny_model, attn_implementation, batch)
    assert packed[0] == pytest.approx(padded[0], rel=1e-5) and packed[1] == padded[1]
    for name, grad in padded[2].items():
        torch.testing.assert_close(packed[2][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_examples_do_not_see_each_other(tiny_model, examples):
    """The test can tell: a packed row given plain causal attention (examples attending to their
    neighbours) changes the loss."""
    encoded, pad = examples
    batch = PackCollator(pad)(encoded)
    apart = loss_and_gradients(tiny_model, "sdpa_varlen", batch)[0]
    merged = {k: v for k, v in batch.items() if k not in ("cu_seq_lens", "max_seq_len")}
    module = XLlamaModule(tiny_model)
    module.configure_model()
    with torch.no_grad():
        logits = module.model(
            input_ids=merged["input_ids"],
            position_ids=merged["position_ids"],
            attention_mask=torch.ones_like(merged["input_ids"]),
            use_cache=False,
        ).logits
    labels = merged["labels"][:, 1:]
    together = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="sum"
    )
    assert abs(float(together) - apart) > 1e-3


def test_flex_attention_forward_keeps_examples_apart(tiny_model, examples):
    """FlexAttention runs forward on CPU (its backward is GPU-only: checked by the GPU check):
    the document mask transformers builds from the position ids gives the padded logits."""
    encoded, pad = examples
    module = XLlamaModule(tiny_model, attn_implementation="flex_attention")
    module.configure_model()
    reference = XLlamaModule(tiny_model)
    reference.configure_model()
    with torch.no_grad():
        packed_loss, packed_tokens = module.response_loss(PackCollator(pad)(encoded))
        padded_loss, padded_tokens = reference.response_loss(PadCollator(pad)(encoded))
    assert int(packed_tokens) == int(padded_tokens)
    assert float(packed_loss) == pytest.approx(float(padded_loss), rel=1e-4)


def test_sdpa_varlen_generates_like_sdpa(tiny_model, examples):
    """Outside packed training (padded batches, generation with a cache) ``sdpa_varlen`` is sdpa."""
    from lightning_xllama.evaluation.generation import generate

    outputs = []
    for implementation in ("sdpa", "sdpa_varlen"):
        module = XLlamaModule(tiny_model, attn_implementation=implementation)
        module.configure_model()
        module.model.eval()
        outputs.append(
            generate(
                module.model,
                module.tokenizer,
                ["the dog", "a king holds the cup and"],
                max_new_tokens=8,
            )
        )
    assert outputs[0] == outputs[1]


def test_unknown_attention_is_refused(tiny_model):
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        XLlamaModule(tiny_model, attn_implementation="flash")


@pytest.mark.parametrize("collate", ["pad", "pack"])
def test_loss_only_at_trained_positions_keeps_loss_and_gradients(tiny_model, examples, collate):
    """The collators' ``loss_positions`` spare the logits of prompt positions; the loss and the
    gradients are those of every position's logits."""
    encoded, pad = examples
    batch = (PadCollator(pad) if collate == "pad" else PackCollator(pad))(encoded)
    assert (
        0 < len(batch["loss_positions"]) < batch["labels"].numel() // 2
    )  # most positions are prompt
    everywhere = {k: v for k, v in batch.items() if k != "loss_positions"}
    selected = loss_and_gradients(tiny_model, "sdpa", batch)
    full = loss_and_gradients(tiny_model, "sdpa", everywhere)
    assert selected[0] == pytest.approx(full[0], rel=1e-5) and selected[1] == full[1]
    for name, grad in full[2].items():
        torch.testing.assert_close(selected[2][name], grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="FlexAttention's backward runs on CUDA only"
)
def test_flex_attention_gradients_equal_padded_on_a_gpu(tiny_model, examples):
    encoded, pad = examples
    results = []
    for implementation, batch in (
        ("sdpa", PadCollator(pad)(encoded)),
        ("flex_attention", PackCollator(pad)(encoded)),
    ):
        torch.manual_seed(0)
        module = XLlamaModule(tiny_model, attn_implementation=implementation)
        module.configure_model()
        module.cuda()
        loss_sum, tokens = module.response_loss(
            {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
        )
        (loss_sum / tokens).backward()
        results.append(
            (float(loss_sum.detach()), {n: p.grad.cpu() for n, p in module.named_parameters()})
        )
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-5, rtol=1e-3, msg=name)
