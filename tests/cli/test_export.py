"""``export``: a Hugging Face folder from a full or a sharded checkpoint, loaded by from_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
from sharded_utils import checkpoint_at, probe_logits, sharded_run
from training_utils import quiet_trainer, tiny_datamodule
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lightning_xllama.callbacks import ResumableCheckpoint
from lightning_xllama.commands.main import main
from lightning_xllama.export.target import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION
from lightning_xllama.training.module import XLlamaModule


@pytest.fixture(scope="module")
def trained(tiny_model, tiny_data, tmp_path_factory):
    """Two steps on one process with a validation pass: the module and its last.ckpt."""
    root = tmp_path_factory.mktemp("export")
    module = XLlamaModule(tiny_model, learning_rate=1e-3)
    trainer = quiet_trainer(
        max_steps=2,
        limit_val_batches=1,
        val_check_interval=2,
        enable_checkpointing=True,
        callbacks=[ResumableCheckpoint(str(root / "checkpoints"))],
    )
    trainer.fit(
        module, datamodule=tiny_datamodule(tiny_model, tiny_data, cache_dir=str(root / "cache"))
    )
    return module, root / "checkpoints" / "last.ckpt"


def test_export_from_a_full_checkpoint_loads_with_the_trained_logits(trained, tiny_model, tmp_path):
    module, ckpt = trained
    out = tmp_path / "hf"
    main(["export", "--ckpt", str(ckpt), "--out", str(out)])
    exported = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(probe_logits(exported), probe_logits(module.model))
    tokens = [
        AutoTokenizer.from_pretrained(path)("a cat.")["input_ids"] for path in (out, tiny_model)
    ]
    assert tokens[0] == tokens[1]
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
    } <= {p.name for p in out.iterdir()}
    # the manifest lists every file the export wrote (it marks the folder as an export)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["format"] == MANIFEST_FORMAT and manifest["version"] == MANIFEST_VERSION
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {MANIFEST_FILE}
    assert {"run.json", "README.md", "tokenizer_config.json"} <= set(manifest["files"])
    card = (out / "README.md").read_text()
    assert f"base_model: {tiny_model}" in card
    assert "| parallel | parallel | syn_far | en-x |" in card  # the data mixture
    assert (
        "| effective batch size | 2 |" in card and "| learning rate (AdamW, peak) | 0.001 |" in card
    )
    assert "| val/loss |" in card  # the last evaluation scores


def test_export_reads_the_saved_data_plan_and_says_when_an_older_checkpoint_has_none(
    trained, tmp_path, capsys
):
    from lightning_xllama.runtime.run_record import read_run_record

    _, ckpt = trained
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "hf")])
    plan = torch.load(ckpt, weights_only=True)["CoITDataModule"]["data_plan"]
    record = read_run_record(tmp_path / "hf")
    assert (
        record["data_plan"] == plan and record["status"] == "exported"
    )  # trained without the RunRecord callback
    counts = [s["epoch_examples"] for s in plan["streams"]]
    assert (
        f"| `{plan['streams'][2]['path']}` | 1.0 | {counts[2]} |"
        in (tmp_path / "hf" / "README.md").read_text()
    )
    # a checkpoint written before the DataModule saved its plan
    old = torch.load(ckpt, weights_only=True)
    del old["CoITDataModule"]["data_plan"]
    torch.save(old, tmp_path / "old.ckpt")
    main(["export", "--ckpt", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "old")])
    assert "holds no data plan" in capsys.readouterr().out
    card = (tmp_path / "old" / "README.md").read_text()
    assert "| parallel | parallel | syn_far | en-x |" in card and "holds no data plan" in card
    assert read_run_record(tmp_path / "old")["data_plan"] is None


@pytest.mark.distributed
def test_export_from_a_sharded_checkpoint_loads_with_the_trained_logits(
    tmp_path_factory, tiny_model, tiny_data, tmp_path
):
    sharded = sharded_run(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)
    out = tmp_path / "hf"
    main(["export", "--ckpt", str(checkpoint_at(sharded, 4)), "--out", str(out), "--dtype", "fp32"])
    exported = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(
        probe_logits(exported), torch.load(sharded / "logits_end.pt", weights_only=True)
    )
    assert "| world size | 2 |" in (out / "README.md").read_text()


def test_export_refuses_an_existing_folder_that_is_not_an_earlier_export(trained, tmp_path):
    _, ckpt = trained
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for flags in ([], ["--overwrite", "true"]):  # overwrite replaces only an earlier export
        with pytest.raises(SystemExit, match="exists, is not empty and is not an earlier export"):
            main(["export", "--ckpt", str(ckpt), "--out", str(out), *flags])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()  # an empty folder is written into
    main(["export", "--ckpt", str(ckpt), "--out", str(out)])
    assert (out / "model.safetensors").is_file() and (out / MANIFEST_FILE).is_file()


def test_export_onto_another_base_model_names_the_differing_tensors(trained, tiny_model, tmp_path):
    _, ckpt = trained
    config = AutoConfig.from_pretrained(tiny_model)
    config.num_hidden_layers, config.intermediate_size = 3, 96
    other = tmp_path / "deeper_model"
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    with pytest.raises(SystemExit) as error:
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "hf"), "--model", str(other)])
    message = str(error.value.code)
    assert "model.model.layers.0.mlp.up_proj.weight: checkpoint (80, 32), model (96, 32)" in message
    assert "model.model.layers.2.self_attn.q_proj.weight: missing from the checkpoint" in message


def test_export_in_a_fresh_process_rebuilds_an_sdpa_varlen_checkpoint(
    tiny_model, tiny_data, tmp_path
):
    """``sdpa_varlen`` is the package's own attention: the export command, a process that never
    built an ``XLlamaModule``, must register it before rebuilding the model."""
    from conftest import run_cli

    module = XLlamaModule(tiny_model, learning_rate=1e-3, attn_implementation="sdpa_varlen")
    trainer = quiet_trainer(
        max_steps=1,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[ResumableCheckpoint(str(tmp_path / "checkpoints"))],
    )
    trainer.fit(
        module, datamodule=tiny_datamodule(tiny_model, tiny_data, cache_dir=str(tmp_path / "c"))
    )
    ckpt, out = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hf"
    result = run_cli(["export", "--ckpt", str(ckpt), "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    exported = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(probe_logits(exported), probe_logits(module.model.eval()))
