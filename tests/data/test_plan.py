"""The epoch plan without a Trainer or a file, the typed ``batching`` group (flat keys still
accepted), and the data module's hyperparameters as plain values that reload."""

from __future__ import annotations

import subprocess
import sys

import lightning
import pytest
import torch
from training_utils import tiny_datamodule

from lightning_xllama.data.loader import Batching, resolve_batching
from lightning_xllama.data.plan import DataPlan, Share


def test_weights_split_the_total_and_the_passes_and_warnings_follow_from_the_sizes():
    plan = DataPlan([Share("a", weight=1.0), Share("b", weight=3.0)], examples_per_epoch=40)
    epoch = plan.epoch([100, 10])
    assert plan.stop_rule == "total" and epoch.counts == [10, 30]
    assert epoch.passes == [0.1, 3.0]
    assert len(epoch.warnings) == 2
    assert epoch.warnings[0].startswith("stream a: 90% of its examples are left unseen")
    assert epoch.warnings[1].startswith("stream b: each example is seen about 3.0 times")


def test_without_weights_every_example_once_and_counts_bypass_the_rule():
    plain = DataPlan([Share("a"), Share("b")])
    assert plain.stop_rule == "all_exhausted_without_replacement"
    assert plain.epoch([7, 5]).counts == [7, 5] and plain.epoch([7, 5]).warnings == []
    counted = DataPlan([Share("a", count=3), Share("pairs", count=4, multiplicity=2), Share("c")])
    assert counted.counted and counted.counts([10, 10, 6]) == [3, 8, 6]
    assert DataPlan([Share("a", weight=1), Share("b", weight=1)], "first_exhausted").counts(
        [4, 9]
    ) == [4, 4]


def test_a_plan_refuses_mixed_shares_an_unknown_rule_and_a_starved_stream():
    with pytest.raises(ValueError, match=r"streams \['a'\] have counts and \['b'\] weights"):
        DataPlan([Share("a", count=1), Share("b", weight=1.0)])
    with pytest.raises(ValueError, match="examples_per_epoch splits weights"):
        DataPlan([Share("a", count=1)], examples_per_epoch=5)
    with pytest.raises(ValueError, match="stop must be one of"):
        DataPlan([Share("a")], stop="never")
    starved = DataPlan([Share("a", weight=1.0), Share("b", weight=0.01)], examples_per_epoch=10)
    with pytest.raises(ValueError, match=r"stream\(s\) \['b'\] have a positive weight but get 0"):
        starved.counts([10, 10])


def test_the_batching_group_takes_a_mode_a_group_or_a_saved_dict_and_the_flat_keys():
    assert resolve_batching("pack", pack_length=1024) == Batching("pack", pack_length=1024)
    assert resolve_batching("pad") == Batching()  # group_batches 64, no rounding
    group = Batching("group_by_length", group_batches=8)
    assert resolve_batching(group, group_batches=8) == group  # the same value twice is fine
    assert resolve_batching({"mode": "pack", "pad_to_multiple_of": 64}).pad_to_multiple_of == 64
    with pytest.raises(ValueError, match=r"X: group_batches: 4 \(batching.group_batches: 8\)"):
        resolve_batching(group, "X", group_batches=4)
    with pytest.raises(ValueError, match=r"X: unknown batching field\(s\) \['packlength'\]"):
        resolve_batching({"mode": "pack", "packlength": 64}, "X")


def test_the_group_and_the_flat_keys_give_the_same_batches_and_plan(tiny_model, tiny_data):
    flat = tiny_datamodule(
        tiny_model, tiny_data, batching="pack", pack_length=600, group_batches=4, max_length=300
    )
    group = tiny_datamodule(
        tiny_model,
        tiny_data,
        batching=Batching("pack", pack_length=600, group_batches=4),
        max_length=300,
    )
    assert (
        flat.hparams["batching"]
        == group.hparams["batching"]
        == {
            "mode": "pack",
            "pack_length": 600,
            "group_batches": 4,
            "pad_to_multiple_of": 1,
        }
    )
    assert "pack_length" not in flat.hparams  # one place for each setting
    assert flat.train_examples(12) == group.train_examples(12)
    assert flat.data_plan() == group.data_plan()
    assert flat.data_plan()["batching"]["mode"] == "pack"
    with pytest.raises(ValueError, match="pack_length: 512 .* disagree with the batching group"):
        tiny_datamodule(tiny_model, tiny_data, batching=Batching("pack"), pack_length=512)


def test_coit_saves_its_streams_and_its_hyperparameters_reload_under_weights_only(
    tiny_model, tiny_data, tmp_path
):
    datamodule = tiny_datamodule(
        tiny_model, tiny_data, batching={"mode": "group_by_length", "group_batches": 8}
    )
    saved = dict(datamodule.hparams)
    assert [s["name"] for s in saved["streams"]] == ["english", "translated", "parallel"]
    assert saved["streams"][2]["kind"] == "parallel" and saved["streams"][2]["weight"] == 1.0
    path = tmp_path / "data.ckpt"
    torch.save(
        {
            "datamodule_hyper_parameters": saved,
            "state_dict": {},
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    reloaded = type(datamodule).load_from_checkpoint(path, weights_only=True)
    assert dict(reloaded.hparams) == saved
    assert reloaded.batching == Batching("group_by_length", group_batches=8)


def test_the_data_plan_imports_no_lightning():
    code = (
        "import sys; import lightning_xllama.data.plan; "
        "assert 'lightning' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
