"""Sharded training against one process, and exact resume: after a stop, after SIGTERM, on 1 and
2 ranks, and a sharded checkpoint continued on another number of ranks."""

from __future__ import annotations

import math
import os
import signal

import lightning as L
import pytest
import torch
from sharded_utils import (
    LEARNING_RATE,
    StepLosses,
    checkpoint_at,
    interleaved_batches,
    launch,
    probe_logits,
    read_losses,
    sharded_run,
)
from torch.utils.data import DataLoader
from training_utils import quiet_trainer, tiny_datamodule
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lightning_xllama.callbacks import ResumableCheckpoint
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.strategies import check_checkpoint_shapes

STEPS, ACCUMULATE = 4, 2


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tiny_model, tiny_data):
    return sharded_run(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)


def module(model: str) -> XLlamaModule:
    return XLlamaModule(model, learning_rate=LEARNING_RATE, warmup_ratio=0.0)


@pytest.mark.distributed
def test_sharded_run_matches_one_process_on_the_same_data(sharded, tiny_model, tiny_data, tmp_path):
    """2 ranks x 2 accumulated micro-batches per step against one process accumulating the same
    4 micro-batches: sharding and accumulation under sharding give the same steps."""
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, batch_size=2, cache_dir=str(tmp_path / "cache")
    )
    batches = interleaved_batches(datamodule, world_size=2, accumulate=ACCUMULATE, steps=STEPS)
    L.seed_everything(0)
    recorder = StepLosses()
    reference = module(tiny_model)
    quiet_trainer(
        max_steps=STEPS, accumulate_grad_batches=2 * ACCUMULATE, callbacks=[recorder]
    ).fit(reference, train_dataloaders=DataLoader(batches, batch_size=None))
    sharded_losses = read_losses(sharded)
    assert sorted(sharded_losses) == [1, 2, 3, 4]
    assert sharded_losses == pytest.approx(recorder.losses, rel=1e-5)
    assert sharded_losses[4] < sharded_losses[1]
    torch.testing.assert_close(
        torch.load(sharded / "logits_end.pt", weights_only=True), probe_logits(reference.model)
    )


@pytest.mark.distributed
def test_sharded_resume_is_exact_after_a_stop_and_after_sigterm(
    sharded, tiny_model, tiny_data, tmp_path
):
    uninterrupted = read_losses(sharded)
    # resume at step 2; SIGTERM arrives in the first micro-batch of step 3: the step is finished,
    # a checkpoint written, and the ranks exit cleanly
    signalled = tmp_path / "signalled"
    result = launch(
        "fsdp2_run.py",
        tiny_model,
        str(tiny_data),
        str(signalled),
        "--steps",
        str(STEPS),
        "--resume",
        str(checkpoint_at(sharded, 2)),
        "--sigterm-at",
        "2",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "SIGTERM received: saving and stopping after step 3" in result.stderr + result.stdout
    assert read_losses(signalled) == {3: pytest.approx(uninterrupted[3], rel=1e-6)}
    resumed = tmp_path / "resumed"
    result = launch(
        "fsdp2_run.py",
        tiny_model,
        str(tiny_data),
        str(resumed),
        "--steps",
        str(STEPS),
        "--resume",
        str(checkpoint_at(signalled, 3)),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_losses(resumed) == {4: pytest.approx(uninterrupted[4], rel=1e-6)}


@pytest.mark.distributed
def test_sharded_checkpoint_continues_on_another_number_of_ranks(
    sharded, tiny_model, tiny_data, tmp_path
):
    out = tmp_path / "one_rank"
    result = launch(
        "fsdp2_run.py",
        tiny_model,
        str(tiny_data),
        str(out),
        "--devices",
        "1",
        "--steps",
        str(STEPS),
        "--resume",
        str(checkpoint_at(sharded, 2)),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    losses = read_losses(out)
    assert sorted(losses) == [3, 4] and all(math.isfinite(v) for v in losses.values())
    assert "RNG states of 2 ranks, this run has 1" in result.stderr


class SendSigterm(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and batch_idx % trainer.accumulate_grad_batches == 0:
            os.kill(os.getpid(), signal.SIGTERM)


class StopAt(L.Callback):
    """Ends the run after optimizer step ``step``, as a user's interruption would: the schedule
    stays the one planned for the whole run."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


class RandomDraws(L.Callback):
    """A draw from torch's global generator after every micro-batch, keyed (step, batch): the
    random streams (dropout, sampling) continue exactly only if the RNG state is restored."""

    def __init__(self):
        self.draws: dict[tuple[int, int], float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.draws[(trainer.global_step, batch_idx)] = torch.rand(()).item()


def test_one_process_resume_is_exact_after_a_stop_and_after_sigterm(
    tiny_model, tiny_data, tmp_path
):
    draws = {}

    def fit(run: str, ckpt_path=None, extra=()):
        """A 4-step run checkpointing into ``tmp_path/run``; ``ckpt_path="last"`` resumes its latest."""
        L.seed_everything(0)
        recorder, draws[(run, ckpt_path)] = StepLosses(), RandomDraws()
        checkpoints = ResumableCheckpoint(str(tmp_path / run), every_n_train_steps=2, save_top_k=-1)
        trainer = quiet_trainer(
            max_steps=STEPS,
            accumulate_grad_batches=ACCUMULATE,
            enable_checkpointing=True,
            callbacks=[recorder, checkpoints, draws[(run, ckpt_path)], *extra],
        )
        datamodule = tiny_datamodule(
            tiny_model, tiny_data, batch_size=2, cache_dir=str(tmp_path / "cache")
        )
        trainer.fit(module(tiny_model), datamodule=datamodule, ckpt_path=ckpt_path)
        return recorder.losses

    uninterrupted = fit("uninterrupted")
    assert fit("stopped", extra=[StopAt(2)]) == pytest.approx(
        {1: uninterrupted[1], 2: uninterrupted[2]}, rel=1e-6
    )
    resumed = fit("stopped", "last")  # as a restarted job does: the latest checkpoint of the run
    assert resumed == pytest.approx({3: uninterrupted[3], 4: uninterrupted[4]}, rel=1e-6)
    after_step_2 = {k: v for k, v in draws[("uninterrupted", None)].draws.items() if k[1] >= 4}
    assert draws[("stopped", "last")].draws == after_step_2  # the RNG state continued too

    with pytest.raises(SystemExit) as stopped:  # Lightning's SIGTERMException: exit status 0
        fit("signalled", extra=[SendSigterm(step=2)])  # in the first micro-batch of step 3
    assert stopped.value.code in (None, 0)
    assert sorted(p.name for p in (tmp_path / "signalled").iterdir()) == [
        "epoch=0-step=2.ckpt",
        "epoch=0-step=3.ckpt",
        "last.ckpt",
    ]
    assert fit("signalled", "last") == pytest.approx({4: uninterrupted[4]}, rel=1e-6)


def test_checkpoint_of_another_model_shape_names_the_tensors(
    tiny_model, tiny_data, tmp_path, sharded
):
    config = AutoConfig.from_pretrained(tiny_model)
    config.hidden_size, config.intermediate_size = 48, 96
    other = tmp_path / "wider_model"
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(other)
    checkpoints = ResumableCheckpoint(str(tmp_path / "wider"))
    datamodule = tiny_datamodule(
        str(other), tiny_data, batch_size=2, cache_dir=str(tmp_path / "cache")
    )
    quiet_trainer(max_steps=1, callbacks=[checkpoints], enable_checkpointing=True).fit(
        XLlamaModule(str(other)), datamodule=datamodule
    )
    with pytest.raises(ValueError) as error:
        quiet_trainer(max_steps=2).fit(
            XLlamaModule(tiny_model),
            datamodule=tiny_datamodule(tiny_model, tiny_data, cache_dir=str(tmp_path / "cache")),
            ckpt_path=tmp_path / "wider" / "last.ckpt",
        )
    assert "model.model.embed_tokens.weight: checkpoint (900, 48), model (900, 32)" in str(
        error.value
    )
    assert "another base model" in str(error.value)
    # a sharded checkpoint is checked from its metadata, before anything is loaded
    wider_shapes = {
        f"model.{k}": tuple(v.shape)
        for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()
    }
    with pytest.raises(
        ValueError, match=r"model.model.norm.weight: checkpoint \(32,\), model \(48,\)"
    ):
        check_checkpoint_shapes(checkpoint_at(sharded, 2), wider_shapes)
