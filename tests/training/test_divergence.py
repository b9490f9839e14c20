"""A step whose loss or gradient norm is NaN or infinite stops training there (``stop``) or is
skipped and counted, stopping after ``max_consecutive_skips`` in a row (``skip_step``); the
``HFExport`` callback refuses non-finite weights and leaves the earlier export in place."""

from __future__ import annotations

import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import HFExport
from lightning_xllama.training.divergence import TrainingDiverged
from lightning_xllama.training.module import XLlamaModule

ONE_LINE = re.compile(
    r"training diverged at optimizer step (\d+) \(learning rate [0-9.e+-]+\): the loss is \S+ "
    r"and the gradient norm \S+; try a lower learning_rate, .*gradient_clip_val.*"
)


class Snapshots(L.Callback):
    """The weights after every optimizer step, and the AdamW step count of one tensor."""

    def __init__(self):
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})


class NanGradients(L.Callback):
    """Puts a NaN into one gradient at the given optimizer steps (counted from 1), as an
    overflow in one backward pass would; the module's hook runs after this one."""

    def __init__(self, steps: set[int]):
        self.steps = steps

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step + 1 in self.steps:
            next(p for p in pl_module.parameters() if p.grad is not None).grad[0] = math.nan


@pytest.mark.parametrize("gradient_clip_val", [None, 1.0])
def test_a_huge_learning_rate_stops_at_the_first_nonfinite_step(
    tiny_model, tiny_data, gradient_clip_val
):
    trainer = quiet_trainer(max_steps=20, gradient_clip_val=gradient_clip_val)
    module = XLlamaModule(tiny_model, learning_rate=100.0)
    with pytest.raises(TrainingDiverged) as raised:
        trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    message = str(raised.value)
    match = ONE_LINE.fullmatch(message)
    assert match and "\n" not in message, message
    assert trainer.global_step == int(match.group(1)) - 1 < 19  # stopped there, not at max_steps
    assert all(torch.isfinite(p).all() for p in module.parameters())  # no NaN update applied


def test_skip_step_skips_counts_and_goes_on_after_a_transient_nan(tiny_model, tiny_data):
    snapshots = Snapshots()
    trainer = quiet_trainer(max_steps=7, callbacks=[NanGradients({2, 3, 5, 6}), snapshots])
    module = XLlamaModule(
        tiny_model, learning_rate=1e-3, on_nonfinite="skip_step", max_consecutive_skips=3
    )
    with pytest.warns(UserWarning, match=r"optimizer step 2 skipped .*1 in a row, 1 in all"):
        trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    # two runs of two skipped steps: below three in a row, so training reached max_steps
    assert trainer.global_step == 7 and module.skipped_steps == 4
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 7  # skipped steps count
    weights = snapshots.weights
    for step in (2, 3, 5, 6):  # a skipped step leaves the weights as they were
        assert all(torch.equal(weights[step - 1][n], weights[step - 2][n]) for n in weights[0])
    assert not all(torch.equal(weights[3][n], weights[2][n]) for n in weights[0])
    state = trainer.optimizers[0].state[next(module.parameters())]
    assert int(state["step"]) == 3  # AdamW stepped on the three finite steps only
    assert module.training_record()["skipped_steps"] == 4


def test_skip_step_stops_after_max_consecutive_skips(tiny_model, tiny_data):
    trainer = quiet_trainer(max_steps=20)
    module = XLlamaModule(
        tiny_model, learning_rate=100.0, on_nonfinite="skip_step", max_consecutive_skips=3
    )
    with (
        pytest.raises(TrainingDiverged, match=r"optimizer steps (\d+)-(\d+) were all skipped") as e,
        pytest.warns(UserWarning, match="skipped"),
    ):
        trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    first, last = map(int, re.search(r"steps (\d+)-(\d+)", str(e.value)).groups())
    assert last - first == 2 and module.skipped_steps == 3
    assert trainer.global_step == last - 1  # the skipped steps before the last one counted
    assert "max_consecutive_skips=3" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "setting",
    [{"on_nonfinite": "ignore"}, {"max_consecutive_skips": 0}, {"max_consecutive_skips": 1.5}],
)
def test_nonfinite_settings_are_checked(tiny_model, setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"XLlamaModule: {name} must be"):
        XLlamaModule(tiny_model, **setting)


class PoisonWeights(L.Callback):
    """NaN into one weight when training ends, before ``HFExport`` writes at the end of fit."""

    def on_train_end(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.model.get_input_embeddings().weight[0, :3] = math.nan


def test_hf_export_refuses_nonfinite_weights_and_keeps_the_earlier_export(
    tiny_model, tiny_data, tmp_path
):
    out = tmp_path / "final_model"
    fit = dict(max_steps=1, default_root_dir=str(tmp_path / "run"))
    quiet_trainer(**fit, callbacks=[HFExport(str(out))]).fit(
        XLlamaModule(tiny_model, learning_rate=1e-3),
        datamodule=tiny_datamodule(tiny_model, tiny_data),
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    trainer = quiet_trainer(**fit, callbacks=[PoisonWeights(), HFExport(str(out), overwrite=True)])
    with pytest.raises(TrainingDiverged, match=r"HFExport: the trained weights are not finite: "):
        trainer.fit(
            XLlamaModule(tiny_model, learning_rate=1e-3),
            datamodule=tiny_datamodule(tiny_model, tiny_data),
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in Path(tmp_path).iterdir() if p.name.startswith(".")] == []
