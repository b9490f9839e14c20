"""LoRA through peft: only the adapters train, are counted, checkpointed and resumed exactly (one
device, DDP, FSDP2 on 2 CPU ranks), and export as an adapter folder or a merged model."""

from __future__ import annotations

import json
import sys

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import FSDPStrategy
from safetensors.torch import load_file
from sharded_utils import StepLosses, launch, probe_logits, read_losses
from training_utils import GradientCapture, quiet_trainer, tiny_datamodule
from transformers import AutoModelForCausalLM

from lightning_xllama.callbacks import HFExport, ResumableCheckpoint
from lightning_xllama.commands.main import main
from lightning_xllama.export.target import MANIFEST_FILE
from lightning_xllama.training.building import ModelSettings, build_model
from lightning_xllama.training.chunked_loss import ChunkedLossHead
from lightning_xllama.training.clipping import clip_grad_norm
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import checkpoint_shapes, decoder_layers

STEPS, ACCUMULATE, RANK, CLIP = 4, 2, 4, 0.1
LORA = dict(lora_rank=RANK, lora_alpha=8.0, lora_dropout=0.1)


def lora_module(model: str, **overrides) -> XLlamaModule:
    kwargs = dict(learning_rate=1e-3, warmup_ratio=0.0, gradient_checkpointing=True, **LORA)
    return XLlamaModule(model, **{**kwargs, **overrides})


def expected_counts(model: str, rank: int = RANK) -> tuple[int, int]:
    """rank x (inputs + outputs) per nn.Linear in the decoder layers; the base's own parameters."""
    base = AutoModelForCausalLM.from_pretrained(model)
    adapters = sum(
        rank * (m.in_features + m.out_features)
        for layer in decoder_layers(base)
        for m in layer.modules()
        if isinstance(m, torch.nn.Linear)
    )
    return adapters, adapters + sum(p.numel() for p in base.parameters())


def trainable_state(module: XLlamaModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


class FirstStep(L.Callback):
    """The adapters before training, and each micro-batch of the first step with the RNG state it
    started from (LoRA dropout draws from it)."""

    def __init__(self):
        self.initial: dict[str, torch.Tensor] = {}
        self.micro_batches: list[tuple[dict, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        self.initial = trainable_state(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.micro_batches.append((dict(batch), torch.get_rng_state()))


@pytest.fixture(scope="module")
def one_device(tiny_model, tiny_data, tmp_path_factory):
    """An uninterrupted 4-step LoRA run (gradient checkpointing, chunked loss, clipping, 2
    accumulated micro-batches, checkpoints after steps 2 and 4), and the same run resumed from its
    step-2 checkpoint."""
    root = tmp_path_factory.mktemp("lora")
    runs = {}

    def fit(run: str, ckpt_path=None, extra=()):
        L.seed_everything(0)
        recorder, module = StepLosses(), lora_module(tiny_model)
        trainer = quiet_trainer(
            max_steps=STEPS,
            accumulate_grad_batches=ACCUMULATE,
            gradient_clip_val=CLIP,
            enable_checkpointing=True,
            logger=CSVLogger(root / "logs", name=run),
            callbacks=[
                recorder,
                ResumableCheckpoint(str(root / run), every_n_train_steps=2, save_top_k=-1),
                *extra,
            ],
        )
        datamodule = tiny_datamodule(
            tiny_model, tiny_data, batch_size=2, cache_dir=str(root / "cache")
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        runs[run] = (module, recorder.losses)

    first, capture = FirstStep(), GradientCapture()
    fit("uninterrupted", extra=[first, capture])
    fit("resumed", str(root / "uninterrupted" / "epoch=0-step=2.ckpt"))
    return root, runs, first, capture


def test_lora_trains_only_the_adapters_and_counts_them(one_device, tiny_model):
    root, runs, _, _ = one_device
    module, losses = runs["uninterrupted"]
    adapters, total = expected_counts(tiny_model)
    assert module.parameter_counts == (adapters, total)
    # recorded with the logged hyperparameters and the run's settings (run.json, model card)
    hparams = yaml.safe_load(
        (root / "logs" / "uninterrupted" / "version_0" / "hparams.yaml").read_text()
    )
    assert (hparams["trainable_parameters"], hparams["total_parameters"]) == (adapters, total)
    assert hparams["lora_rank"] == RANK
    settings = module.training_record()["training_settings"]
    assert (settings["trainable_parameters"], settings["total_parameters"]) == (adapters, total)
    # the base weights did not move; every adapter did (lora_B starts at zero)
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    for name, parameter in module.model.named_parameters():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
            assert not parameter.requires_grad and torch.equal(parameter, base[key]), name
    assert all(p.abs().sum() > 0 for n, p in module.model.named_parameters() if "lora_B" in n)
    assert isinstance(module.model.get_output_embeddings(), ChunkedLossHead)
    assert module.model.is_gradient_checkpointing and sorted(losses) == [1, 2, 3, 4]


def test_rescaling_clipping_and_the_chunked_loss_give_the_plain_gradient(one_device, tiny_model):
    """The first step's gradients (chunked loss, checkpointed layers, rescaled to the per-token
    mean over both micro-batches, clipped) against a plain full-logits computation."""
    _, _, first, capture = one_device
    reference = lora_module(tiny_model, loss_chunk_size=None, gradient_checkpointing=False)
    reference.configure_model()
    reference.load_state_dict(first.initial, strict=False)
    tokens = sum((b["labels"][:, 1:] != -100).sum() for b, _ in first.micro_batches)
    for batch, rng in first.micro_batches:
        torch.set_rng_state(rng)  # the same dropout masks
        loss_sum, _ = reference.response_loss(batch)
        (loss_sum / tokens).backward()
    parameters = [p for p in reference.parameters() if p.grad is not None]
    assert clip_grad_norm(parameters, CLIP) > CLIP  # the test can tell whether clipping happened
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert capture.steps[0].keys() == expected.keys() == first.initial.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(capture.steps[0][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_lora_checkpoint_holds_only_the_adapters_and_resumes_exactly(one_device, tiny_model):
    root, runs, _, _ = one_device
    uninterrupted, losses = runs["uninterrupted"]
    resumed, resumed_losses = runs["resumed"]
    assert resumed_losses == pytest.approx({3: losses[3], 4: losses[4]}, rel=1e-6)
    final, expected = trainable_state(resumed), trainable_state(uninterrupted)
    assert final.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], rtol=1e-6, atol=1e-7, msg=name)

    ckpt = root / "uninterrupted" / "epoch=0-step=2.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    adapters = set(expected)
    assert set(checkpoint["state_dict"]) == adapters
    assert all(".lora_A." in k or ".lora_B." in k for k in adapters)
    # the optimizer state covers the adapters and nothing else
    assert sum(len(g["params"]) for g in checkpoint["optimizer_states"][0]["param_groups"]) == len(
        adapters
    )
    base_bytes = (AutoModelForCausalLM.from_pretrained(tiny_model).num_parameters()) * 4
    assert ckpt.stat().st_size < base_bytes / 2  # weights + 2 Adam moments would be 3x base


def test_lora_export_writes_the_adapter_folder_or_the_merged_model(
    one_device, tiny_model, tmp_path
):
    from peft import PeftModel

    root, runs, _, _ = one_device
    module = runs["uninterrupted"][0]
    module.model.eval()  # no dropout
    trained = probe_logits(module.model)
    ckpt = root / "uninterrupted" / "last.ckpt"
    main(
        [
            "export",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "adapter"),
            "--lora_output",
            "adapter",
        ]
    )
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "merged")])
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter"
    ).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(probe_logits(adapter), trained)
    torch.testing.assert_close(probe_logits(merged), probe_logits(adapter), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(
        probe_logits(AutoModelForCausalLM.from_pretrained(tiny_model)), trained, atol=1e-4
    )  # the adapters changed the logits: the comparisons above can fail
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "run.json", "README.md"} <= files
    assert "model.safetensors" not in files
    manifest = json.loads((tmp_path / "adapter" / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == files - {MANIFEST_FILE}
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == RANK
    assert all("lora_" in k for k in load_file(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "PeftModel.from_pretrained" in (tmp_path / "adapter" / "README.md").read_text()
    card = (tmp_path / "merged" / "README.md").read_text()
    assert f"LoRA (rank {RANK}" in card and "| trainable parameters |" in card
    assert not any("lora" in k for k in load_file(tmp_path / "merged" / "model.safetensors"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lora_rank=0), "lora_rank must be a whole number >= 1"),
        (dict(lora_rank=8, lora_dropout=1.0), r"lora_dropout must be in \[0, 1\)"),
        (dict(lora_rank=8, lora_alpha=-1.0), "lora_alpha must be > 0"),
        (dict(lora_rank=8, lora_target_modules=[]), "lora_target_modules must be a non-empty"),
        (dict(lora_quantize="nf4"), "lora_rank must be set when lora_quantize is"),
    ],
)
def test_bad_lora_arguments_are_refused(tiny_model, overrides, message):
    with pytest.raises(ValueError, match=message):
        XLlamaModule(tiny_model, **overrides)


def test_lora_set_ups_that_cannot_work_fail_naming_what_was_expected(tiny_model, monkeypatch):
    with pytest.raises(ValueError, match="'qproj' matches no module; expected .*q_proj, up_proj"):
        XLlamaModule(tiny_model, lora_rank=2, lora_target_modules=["qproj"]).configure_model()
    with pytest.raises(ValueError, match="'lm_head' matches lm_head, outside them"):
        XLlamaModule(tiny_model, lora_rank=2, lora_target_modules=["lm_head"]).configure_model()
    with pytest.raises(RuntimeError, match="needs a CUDA GPU and the bitsandbytes package"):
        XLlamaModule(tiny_model, lora_rank=2, lora_quantize="nf4").configure_model()
    with pytest.raises(ValueError, match="not FSDPStrategy.*DecoderFSDP2Strategy"):
        build_model(ModelSettings(tiny_model, lora_rank=2), FSDPStrategy())
    with pytest.raises(
        ValueError, match="compile_layers .* not FSDPStrategy.*DecoderFSDP2Strategy"
    ):
        build_model(ModelSettings(tiny_model, compile_layers=True), FSDPStrategy())
    with pytest.raises(ValueError, match="lora_output must be one of"):
        HFExport("hf_model", lora_output="both")
    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(
        ImportError, match=r"needs the peft package: pip install 'lightning_xllama\[lora\]'"
    ):
        XLlamaModule(tiny_model, lora_rank=2)


@pytest.fixture(scope="module")
def two_ranks(tiny_model, tiny_data, tmp_path_factory):
    """One launch on 2 CPU ranks: FSDP2 uninterrupted, FSDP2 resumed from its step 2, DDP."""
    out = tmp_path_factory.mktemp("lora_two_ranks")
    result = launch("lora_run.py", tiny_model, str(tiny_data), str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result.stdout + result.stderr


@pytest.mark.distributed
def test_lora_under_fsdp2_shards_the_adapters_checkpoints_and_resumes_exactly(
    two_ranks, tiny_model, tmp_path
):
    """Adapters sharded with their layers (DTensors) under activation checkpointing, sharded
    checkpoints of the adapters only, exact resume, and both exports gathering them."""
    out, log = two_ranks
    uninterrupted, resumed = out / "uninterrupted", out / "resumed"
    adapters, total = expected_counts(tiny_model)
    assert f"{adapters:,} trainable parameters of {total:,}" in log
    assert json.loads((uninterrupted / "counts.json").read_text()) == [[adapters, total]] * 2
    shapes = checkpoint_shapes(uninterrupted / "checkpoints" / "epoch=0-step=2.ckpt")
    assert shapes and all(".lora_A." in k or ".lora_B." in k for k in shapes)
    losses = read_losses(uninterrupted)
    assert sorted(losses) == [1, 2, 3, 4]
    assert read_losses(resumed) == pytest.approx({3: losses[3], 4: losses[4]}, rel=1e-6)
    end = torch.load(uninterrupted / "logits_end.pt", weights_only=True)
    torch.testing.assert_close(torch.load(resumed / "logits_end.pt", weights_only=True), end)

    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    adapter = PeftModel.from_pretrained(base, out / "adapter").eval()  # the HFExport callback's
    torch.testing.assert_close(probe_logits(adapter), end)
    step_4 = uninterrupted / "checkpoints" / "epoch=0-step=4.ckpt"
    main(["export", "--ckpt", str(step_4), "--out", str(tmp_path / "merged")])
    torch.testing.assert_close(
        probe_logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged")), end
    )


@pytest.mark.distributed
def test_lora_under_ddp_counts_and_checkpoints_the_adapters(two_ranks, tiny_model):
    out = two_ranks[0] / "ddp"
    adapters, total = expected_counts(tiny_model)
    assert json.loads((out / "counts.json").read_text()) == [[adapters, total]] * 2
    assert sorted(read_losses(out)) == [1, 2]
    checkpoint = torch.load(out / "checkpoints" / "epoch=0-step=2.ckpt", weights_only=True)
    module = XLlamaModule(tiny_model, **LORA)
    module.configure_model()
    assert set(checkpoint["state_dict"]) == set(module.parameter_shapes)  # the adapters
    assert all(".lora_" in k for k in checkpoint["state_dict"])
    assert checkpoint["training_settings"]["trainable_parameters"] == adapters
    assert checkpoint["training_settings"]["world_size"] == 2


def test_checkpoints_keep_trainable_tensors_and_buffers_not_a_quantised_base_state():
    """A quantised layer (bitsandbytes) adds entries to its state dict that are neither
    parameters nor buffers; they come back from the base folder, never from a checkpoint."""
    from torch import nn

    from lightning_xllama.training.lora import checkpointed_keys

    class Quantised(nn.Linear):
        def _save_to_state_dict(self, destination, prefix, keep_vars):
            super()._save_to_state_dict(destination, prefix, keep_vars)
            destination[prefix + "weight.absmax"] = torch.ones(1)

    model = nn.Sequential(Quantised(2, 2), nn.BatchNorm1d(2))
    model[0].weight.requires_grad_(False)
    model[1].requires_grad_(False)
    assert "0.weight.absmax" in model.state_dict()
    assert checkpointed_keys(model) == [
        "0.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]


def test_default_targets_outside_the_decoder_layers_are_refused(tiny_model):
    """By default every linear of the decoder layers gets an adapter, by leaf name; a module of
    the same name elsewhere (a vision tower's q_proj) would get one too, so it is refused."""
    from torch import nn

    from lightning_xllama.training.lora import target_module_names

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert "q_proj" in target_module_names(model, None)
    model.tower = nn.Module()
    model.tower.q_proj = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="'q_proj' matches tower.q_proj, outside them"):
        target_module_names(model, None)
