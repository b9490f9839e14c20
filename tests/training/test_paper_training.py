"""The paper's training settings: the Hugging Face Trainer's loss normalisation and FSDP precision.

One optimizer step of two accumulated micro-batches with 3 and 1 response tokens, tokens with
losses l1..l4: ``step_tokens`` trains on (l1 + l2 + l3 + l4) / 4, ``micro_batch_mean`` (the
Trainer's mean per micro-batch, averaged over the accumulation) on ((l1 + l2 + l3) / 3 + l4) / 2.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from ddp_micro_batch_mean import micro_batches
from fit_configs import TWO_QUIET_STEPS, coit_fit_config, write_config
from paths import HELPERS, helper_env
from torch.distributed.fsdp import MixedPrecision
from torch.utils.data import DataLoader
from training_utils import GradientCapture, quiet_trainer

from lightning_xllama.commands.fit import XLlamaCLI
from lightning_xllama.data.encoding import IGNORE_INDEX
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import DecoderFSDPStrategy

TOKEN_WEIGHTS = {
    "step_tokens": [1 / 4, 1 / 4, 1 / 4, 1 / 4],
    "micro_batch_mean": [1 / 6, 1 / 6, 1 / 6, 1 / 2],
}
"""Each response token's weight in the step's loss, by hand: 4 tokens in the step; or the first
micro-batch's 3 tokens share its half, the second's one token has the other half."""


def token_losses(module: XLlamaModule, batches: list[dict]) -> torch.Tensor:
    """The response tokens' cross-entropy, in step order, with the graph for a backward."""
    losses = []
    for batch in batches:
        logits = module.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        labels = batch["labels"][:, 1:].flatten()
        per_token = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            labels,
            ignore_index=IGNORE_INDEX,
            reduction="none",
        )
        losses.append(per_token[labels != IGNORE_INDEX])
    return torch.cat(losses)


def reference(model: str, batches: list[dict], weights: list[float]) -> tuple[float, dict]:
    """The weighted sum of the token losses and its gradients, on a freshly loaded model."""
    module = XLlamaModule(model)
    module.configure_model()
    loss = (token_losses(module, batches) * torch.tensor(weights)).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def one_accumulated_step(model: str, batches: list[dict], rule: str) -> tuple[float, dict]:
    """The logged loss and the stepped gradients of one optimizer step over ``batches``."""
    capture = GradientCapture()
    trainer = quiet_trainer(max_steps=1, accumulate_grad_batches=len(batches), callbacks=[capture])
    trainer.fit(
        XLlamaModule(model, loss_normalisation=rule),
        train_dataloaders=DataLoader(batches, batch_size=None),
    )
    return float(trainer.callback_metrics["train/loss"]), capture.steps[0]


@pytest.mark.parametrize("rule", ["step_tokens", "micro_batch_mean"])
def test_each_loss_normalisation_weighs_the_tokens_as_computed_by_hand(tiny_model, rule):
    vocab_size = XLlamaModule(tiny_model).tokenizer.vocab_size
    batches = micro_batches(vocab_size)
    assert [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches] == [3, 1]

    logged, grads = one_accumulated_step(tiny_model, batches, rule)

    expected_loss, expected_grads = reference(tiny_model, batches, TOKEN_WEIGHTS[rule])
    assert logged == pytest.approx(expected_loss, rel=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name in expected_grads:
        torch.testing.assert_close(grads[name], expected_grads[name], atol=1e-6, rtol=1e-4)
    # the two rules train on different losses: the test tells them apart
    other = "micro_batch_mean" if rule == "step_tokens" else "step_tokens"
    other_loss, other_grads = reference(tiny_model, batches, TOKEN_WEIGHTS[other])
    assert not math.isclose(other_loss, expected_loss, rel_tol=1e-4)
    assert any(
        not torch.allclose(other_grads[n], expected_grads[n], atol=1e-6, rtol=1e-4)
        for n in expected_grads
    )


@pytest.mark.distributed
def test_micro_batch_mean_on_two_ranks_averages_the_ranks_means(tiny_model, tmp_path):
    """Rank 0 with 3 response tokens, rank 1 with 1: the Trainer's gradient is the mean of the
    ranks' micro-batch means, the same weights as two accumulated micro-batches."""
    out = tmp_path / "grads"
    result = subprocess.run(
        [
            sys.executable,
            str(HELPERS / "ddp_micro_batch_mean.py"),
            tiny_model,
            "micro_batch_mean",
            str(out),
        ],
        env=helper_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batches = micro_batches(XLlamaModule(tiny_model).tokenizer.vocab_size)
    expected_loss, expected_grads = reference(
        tiny_model, batches, TOKEN_WEIGHTS["micro_batch_mean"]
    )
    assert torch.load(f"{out}.rank0.pt", weights_only=True)["loss"] == pytest.approx(
        expected_loss, rel=1e-5
    )
    for rank in (0, 1):
        grads = torch.load(f"{out}.rank{rank}.pt", weights_only=True)["grads"]
        for name in expected_grads:
            torch.testing.assert_close(grads[name], expected_grads[name], atol=1e-6, rtol=1e-4)


def test_both_rules_agree_on_a_single_micro_batch(tiny_model):
    """One micro-batch, one rank: both rules are its mean over its response tokens."""
    batches = micro_batches(XLlamaModule(tiny_model).tokenizer.vocab_size)[:1]
    losses = [one_accumulated_step(tiny_model, batches, rule) for rule in TOKEN_WEIGHTS]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-6)
    for name, grad in losses[0][1].items():
        torch.testing.assert_close(losses[1][1][name], grad, atol=1e-7, rtol=1e-5)


def test_an_unknown_loss_normalisation_is_refused_by_name(tiny_model):
    with pytest.raises(ValueError, match="loss_normalisation must be step_tokens or micro_batch"):
        XLlamaModule(tiny_model, loss_normalisation="mean")


def test_micro_batch_mean_fits_through_the_cli(tiny_model, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = coit_fit_config(
        tmp_path, tiny_model, tiny_data, accumulate_grad_batches=2, **TWO_QUIET_STEPS
    )
    config["model"]["init_args"]["loss_normalisation"] = "micro_batch_mean"
    cli = XLlamaCLI(args=["fit", "--config", str(write_config(tmp_path / "fit.yaml", config))])

    assert cli.trainer.global_step == 2
    assert cli.model.hparams.loss_normalisation == "micro_batch_mean"
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


def test_the_fsdp_strategy_builds_the_papers_precision(tiny_model):
    """The Hugging Face Trainer with ``--fsdp "full_shard auto_wrap" --bf16``: everything bf16,
    no activation checkpointing; the default reduces in fp32 and checkpoints."""
    paper = DecoderFSDPStrategy(
        reduce_dtype="bf16", buffer_dtype="bf16", activation_checkpointing=False
    )
    assert paper.mixed_precision_config == MixedPrecision(
        param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16
    )
    module = XLlamaModule(tiny_model)
    module.configure_model()
    paper.set_policies(module)
    assert paper._activation_checkpointing_kwargs == {}

    default = DecoderFSDPStrategy()
    assert default.mixed_precision_config.reduce_dtype == torch.float32
    default.set_policies(module)
    assert default._activation_checkpointing_kwargs
    with pytest.raises(ValueError, match="DecoderFSDPStrategy: reduce_dtype must be one of"):
        DecoderFSDPStrategy(reduce_dtype="bfloat16")
