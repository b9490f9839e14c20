"""Chunked causal-LM loss: the same loss and gradients as full logits + ``cross_entropy``."""

from __future__ import annotations

import copy
from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from lightning_xllama.training.chunked_loss import (
    ChunkedLossHead,
    chunked_cross_entropy,
    final_logit_softcap,
    install_chunked_loss_head,
)

N, H, V = 50, 16, 37


def reference_loss(
    hidden, weight, labels, softcap: Optional[float] = None, bias=None
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")


def inputs(dtype=torch.float32, bias: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(V, H, generator=g) * 0.5).to(dtype).requires_grad_()
    b = (torch.randn(V, generator=g)).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, V, (N,), generator=g)
    labels[torch.rand(N, generator=g) < 0.3] = -100
    return hidden, weight, b, labels


def loss_and_grads(fn, hidden, weight, bias, labels, **kwargs):
    leaves = [t for t in (hidden, weight, bias) if t is not None]
    for t in leaves:
        t.grad = None
    loss = fn(hidden, weight, labels, bias=bias, **kwargs)
    loss.backward()
    return loss.detach(), [None if t is None else t.grad for t in (hidden, weight, bias)]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12)).item()


def check(hidden, weight, bias, labels, chunk_size: int, softcap=None, tol: Optional[float] = None):
    ref_loss, ref_grads = loss_and_grads(
        reference_loss, hidden, weight, bias, labels, softcap=softcap
    )
    loss, grads = loss_and_grads(
        chunked_cross_entropy, hidden, weight, bias, labels, chunk_size=chunk_size, softcap=softcap
    )
    assert loss.dtype == torch.float32 and loss.dim() == 0
    for got, want in zip([loss, *grads], [ref_loss, *ref_grads]):
        if want is None:
            assert got is None
            continue
        assert got.dtype == want.dtype and got.shape == want.shape
        if tol is None:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        else:
            assert relative_error(got, want) < tol


@pytest.mark.parametrize("chunk_size", [10, 7, 1, 1000])
@pytest.mark.parametrize("bias", [False, True])
def test_loss_and_gradients_equal_the_full_logits_ones(chunk_size, bias):
    hidden, weight, b, labels = inputs(bias=bias)
    check(hidden, weight, b, labels, chunk_size)


def test_chunks_with_every_label_ignored():
    hidden, weight, b, labels = inputs()
    labels[:20] = -100  # chunks 0 and 1 of 10 rows carry no loss
    check(hidden, weight, b, labels, chunk_size=10)
    labels[:] = -100
    loss, grads = loss_and_grads(chunked_cross_entropy, hidden, weight, b, labels, chunk_size=10)
    assert loss.item() == 0 and all(g.abs().sum().item() == 0 for g in grads)


@pytest.mark.parametrize("softcap", [2.0, 30.0])
def test_soft_capping(softcap):
    hidden, weight, b, labels = inputs()
    with torch.no_grad():
        weight.mul_(4)  # logits of several units, where tanh bends
    check(hidden, weight, b, labels, chunk_size=7, softcap=softcap)


def test_bf16_inputs():
    hidden, weight, b, labels = inputs(torch.bfloat16)
    check(hidden, weight, b, labels, chunk_size=7, softcap=5.0, tol=1e-2)


def test_cpu_autocast_bf16():
    hidden, weight, b, labels = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check(hidden, weight, b, labels, chunk_size=7, tol=1e-2)
    # Autocast really changed the matmuls: the fp32 result differs by more than fp32 rounding.
    fp32_loss = reference_loss(hidden, weight, labels, bias=b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = chunked_cross_entropy(hidden, weight, labels, chunk_size=7, bias=b)
    assert 1e-5 < relative_error(loss, fp32_loss) < 1e-2


def test_inputs_without_grad_and_grad_output_scaling():
    hidden, weight, b, labels = inputs()
    weight.requires_grad_(False)
    check(hidden, weight, b, labels, chunk_size=7)
    hidden.requires_grad_(False)
    weight.requires_grad_()
    check(hidden, weight, b, labels, chunk_size=7)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        loss = chunked_cross_entropy(hidden, weight, labels, chunk_size=7, bias=b)
    assert loss.grad_fn is None
    assert flops.get_total_flops() == 2 * N * H * V  # the logits only: no gradients under no_grad
    torch.testing.assert_close(loss, reference_loss(hidden, weight, labels, bias=b).detach())

    hidden.requires_grad_()
    hidden.grad = weight.grad = b.grad = None
    (reference_loss(hidden, weight, labels, bias=b) * 0.25).backward()
    want = [hidden.grad, weight.grad, b.grad]
    hidden.grad = weight.grad = b.grad = None
    loss = chunked_cross_entropy(hidden, weight, labels, chunk_size=7, bias=b)
    (loss * 0.25).backward(retain_graph=True)
    for got, expected in zip([hidden.grad, weight.grad, b.grad], want):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="already used"):
        loss.backward()


def test_head_shifts_the_labels_and_returns_empty_logits():
    torch.manual_seed(0)
    head = ChunkedLossHead(H, V, bias=True)
    hidden = torch.randn(3, 9, H, requires_grad=True)
    labels = torch.randint(0, V, (3, 9))
    labels[0, :4] = -100
    logits = head(hidden)
    torch.testing.assert_close(logits, F.linear(hidden, head.weight, head.bias))
    ref = reference_loss(
        hidden[:, :-1].flatten(0, 1), head.weight, labels[:, 1:].flatten(), bias=head.bias
    )
    with head.computing_loss(labels, chunk_size=5):
        empty = head(hidden)
        loss = head.take_loss()
    assert empty.shape == (3, 9, 0)
    torch.testing.assert_close(loss, ref)
    with pytest.raises(RuntimeError, match="no loss"):
        head.take_loss()
    torch.testing.assert_close(head(hidden), logits)  # outside the block: logits again


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, vocab, (2, 13), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 10:] = 0  # right padding
    labels = input_ids.clone()
    labels[:, :4] = -100  # the prompt
    labels[attention_mask == 0] = -100
    return input_ids, attention_mask, labels


def model_loss_matches(plain: torch.nn.Module, vocab: int, chunk_size: int = 5) -> torch.nn.Module:
    """The chunked head's loss and parameter gradients equal the plain model's; returns that model."""
    chunked = copy.deepcopy(plain)
    head = install_chunked_loss_head(chunked)
    input_ids, attention_mask, labels = batch(vocab)

    logits = plain(input_ids=input_ids, attention_mask=attention_mask).logits
    want = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), reduction="sum"
    )
    want.backward()
    with head.computing_loss(labels, chunk_size=chunk_size):
        out = chunked(input_ids=input_ids, attention_mask=attention_mask)
    assert out.logits.shape == (2, 13, 0)
    loss = head.take_loss()
    loss.backward()
    torch.testing.assert_close(loss, want)
    grads = dict(chunked.named_parameters())
    for name, parameter in plain.named_parameters():
        torch.testing.assert_close(grads[name].grad, parameter.grad, rtol=1e-4, atol=1e-6, msg=name)
    with torch.no_grad():  # outside the block: the model's usual logits
        torch.testing.assert_close(
            chunked(input_ids=input_ids, attention_mask=attention_mask).logits, logits
        )
    return chunked


@pytest.mark.parametrize("tied", [False, True])
def test_llama_with_the_head_has_the_same_loss_and_gradients(tied):
    plain = tiny_llama(tied)
    chunked = model_loss_matches(plain, vocab=320)
    head = chunked.get_output_embeddings()
    assert type(head) is ChunkedLossHead and head.default_softcap is None
    assert (head.weight is chunked.get_input_embeddings().weight) == tied


def test_gemma2_soft_capping_comes_from_the_config():
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        final_logit_softcapping=1.0,
        attn_implementation="eager",
    )
    assert final_logit_softcap(config) == 1.0
    assert final_logit_softcap(LlamaConfig()) is None
    model = Gemma2ForCausalLM(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20)  # logits of a few units: the cap bends them
    chunked = model_loss_matches(model, vocab=320)
    head = chunked.get_output_embeddings()
    input_ids, attention_mask, labels = batch(320)
    with torch.no_grad():
        with head.computing_loss(labels):
            chunked(input_ids=input_ids, attention_mask=attention_mask)
        capped = head.take_loss()
        with head.computing_loss(labels, softcap=None):
            chunked(input_ids=input_ids, attention_mask=attention_mask)
        assert relative_error(head.take_loss(), capped) > 0.1


def test_install_on_a_meta_model_keeps_the_parameters():
    with torch.device("meta"):
        model = tiny_llama(tied=True)
    weight = model.lm_head.weight
    head = install_chunked_loss_head(model)
    assert head is model.lm_head and head.weight is weight and head.weight.is_meta
    assert install_chunked_loss_head(model) is head  # twice is harmless


def test_save_and_load_keep_the_state_dict(tmp_path):
    for tied in (False, True):
        model = tiny_llama(tied)
        keys = list(model.state_dict())
        install_chunked_loss_head(model)
        assert list(model.state_dict()) == keys
        model.save_pretrained(tmp_path / str(tied))
        loaded = LlamaForCausalLM.from_pretrained(tmp_path / str(tied))
        assert type(loaded.lm_head) is torch.nn.Linear
        state = loaded.state_dict()
        assert list(state) == keys
        for key, value in model.state_dict().items():
            assert torch.equal(state[key], value), key


def test_install_keeps_a_wrapped_linear_class():
    class Wrapped(torch.nn.Linear):  # as FSDP2's FSDPLinear, made by fully_shard
        pass

    model = tiny_llama(tied=False)
    model.lm_head.__class__ = Wrapped
    head = install_chunked_loss_head(model)
    assert isinstance(head, ChunkedLossHead) and isinstance(head, Wrapped)
    assert type(install_chunked_loss_head(copy.deepcopy(model))) is type(head)
    input_ids, attention_mask, labels = batch(320)
    with torch.no_grad(), head.computing_loss(labels):
        assert model(input_ids=input_ids, attention_mask=attention_mask).logits.shape == (2, 13, 0)
    assert head.take_loss() > 0
