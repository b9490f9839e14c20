"""The GPU recipes' first step, reproduced on CPU: a model folder with the KV cache on under
activation checkpointing, and gradient clipping under every precision and strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from sharded_utils import launch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    apply_activation_checkpointing,
    checkpoint_wrapper,
)
from training_utils import (
    GradientCapture,
    first_examples,
    quiet_trainer,
    reference_gradients,
    tiny_datamodule,
)

from lightning_xllama.data.collate import PadCollator
from lightning_xllama.training.clipping import clip_grad_norm
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import decoder_layer_classes


def test_layer_checkpointing_with_the_cache_on_in_the_config(tiny_model, tiny_data):
    """FSDPStrategy checkpoints each decoder layer with torch's wrapper; a real model folder has
    ``use_cache`` on. The recomputed forward must not append to a cache the first one filled."""
    assert json.loads((Path(tiny_model) / "config.json").read_text())["use_cache"]
    datamodule = tiny_datamodule(tiny_model, tiny_data)
    batch = PadCollator(datamodule.tokenizer.pad_token_id)(first_examples(datamodule, 4))
    assert (batch["attention_mask"] == 0).any()  # padded
    gradients = []
    for checkpointed in (False, True):
        module = XLlamaModule(tiny_model)
        module.configure_model()
        if checkpointed:
            layers = tuple(decoder_layer_classes(module.model))
            apply_activation_checkpointing(
                module.model,
                checkpoint_wrapper_fn=checkpoint_wrapper,
                check_fn=lambda m: isinstance(m, layers),
            )
        loss_sum, tokens = module.response_loss(batch)
        (loss_sum / tokens).backward()
        gradients.append(
            {
                n.replace("._checkpoint_wrapped_module", ""): p.grad
                for n, p in module.named_parameters()
            }
        )
    for name, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def clipped(gradients: dict[str, torch.Tensor], max_norm: float) -> dict[str, torch.Tensor]:
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in gradients.values()])
    )
    return {n: g * min(1.0, max_norm / (float(norm) + 1e-6)) for n, g in gradients.items()}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true"])
def test_clipping_by_global_norm_on_one_device(tiny_model, tiny_data, precision):
    """The step's gradients (rescaled to the token mean) are clipped to the global norm, with
    the fused AdamW the module builds, under each precision (Lightning's own clipping refuses a
    fused optimizer under mixed precision)."""
    capture = GradientCapture()
    trainer = quiet_trainer(
        max_steps=2, gradient_clip_val=0.05, precision=precision, callbacks=[capture]
    )
    module = XLlamaModule(tiny_model)
    trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    assert trainer.optimizers[0].defaults["fused"]
    assert len(capture.steps) == 2
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.float()) for g in capture.steps[0].values()])
    )
    assert float(norm) == pytest.approx(
        0.05, rel=1e-2
    )  # the tiny model's raw norm is far above 0.05
    assert float(trainer.callback_metrics["train/grad_norm"]) > 0.05
    if precision == "32-true":
        datamodule = tiny_datamodule(tiny_model, tiny_data)
        expected = clipped(
            reference_gradients(
                tiny_model, first_examples(datamodule, 2), datamodule.tokenizer.pad_token_id
            ),
            0.05,
        )
        for name, grad in expected.items():
            torch.testing.assert_close(capture.steps[0][name], grad, atol=1e-7, rtol=1e-4, msg=name)


def test_fp16_gets_an_unfused_optimizer_so_its_scaler_unscales_before_clipping(
    tiny_model, tiny_data
):
    """fp16 with a loss scaler (CPU autocast here; the same plugin as ``16-mixed`` on a GPU)."""
    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
    capture = GradientCapture()
    trainer = quiet_trainer(
        max_steps=1, gradient_clip_val=0.05, plugins=[fp16], callbacks=[capture]
    )
    trainer.fit(XLlamaModule(tiny_model), datamodule=tiny_datamodule(tiny_model, tiny_data))
    assert not trainer.optimizers[0].defaults["fused"]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.float()) for g in capture.steps[0].values()])
    )
    assert float(norm) == pytest.approx(0.05, rel=1e-2)  # clipped after unscaling, not before


def test_clip_grad_norm_is_the_global_norm():
    parameters = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    parameters[0].grad = torch.tensor([3.0, 0.0, 0.0])
    parameters[1].grad = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    norm = clip_grad_norm(parameters, 1.0)
    assert float(norm) == pytest.approx(5.0)
    torch.testing.assert_close(
        parameters[0].grad, torch.tensor([0.6, 0.0, 0.0]), atol=1e-6, rtol=1e-5
    )
    assert float(clip_grad_norm(parameters, 10.0)) == pytest.approx(
        1.0, rel=1e-5
    )  # below: unchanged
    torch.testing.assert_close(
        parameters[1].grad, torch.tensor([[0.0, 0.8], [0.0, 0.0]]), atol=1e-6, rtol=1e-5
    )


@pytest.mark.distributed
def test_fsdp2_clipping_on_two_ranks_equals_one_process(tiny_model, tiny_data, tmp_path):
    """Sharded (DTensor) gradients, clipped by the global norm over both ranks' shards, equal
    one process's clipped gradients of the same four examples."""
    out = tmp_path / "grads"
    result = launch("fsdp2_clip.py", tiny_model, str(tiny_data), str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    datamodule = tiny_datamodule(tiny_model, tiny_data)
    examples = first_examples(datamodule, 4, world_size=2)
    expected = clipped(
        reference_gradients(tiny_model, examples, datamodule.tokenizer.pad_token_id), 0.05
    )
    actual = torch.load(f"{out}.pt", weights_only=True)
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, atol=1e-7, rtol=1e-4, msg=name)
