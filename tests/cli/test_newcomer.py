"""What a newcomer meets first: ``test`` runs the evaluations, ``--optimizer`` and
``--lr_scheduler`` train, ``export`` works from any folder, the commands print no noise, one seed
drives the run, and the declared dependencies are the ones the package uses."""

from __future__ import annotations

import configparser
import json
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import REPO, run_cli
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.commands.main import main
from lightning_xllama.training.module import XLlamaModule

NOISE = ("💡 Tip", "LeafSpec", "args parameter is intended", "__main__.py")


def small_evaluations(demo_root: Path, tmp_path: Path) -> Path:
    """The demo config with its evaluations cut to a few sentences and tokens."""
    config = yaml.safe_load((demo_root / "configs" / "demo.yaml").read_text())
    smaller = {"max_samples": 8, "batch_size": 8, "max_new_tokens": 4, "num_sentences": 8}
    callbacks = []
    for callback in config["trainer"]["callbacks"]:
        args = callback.get("init_args") or {}
        callback["init_args"] = {k: smaller.get(k, v) for k, v in args.items()}
        if "Evaluation" in callback["class_path"] or "Probe" in callback["class_path"]:
            callbacks.append(callback)
    config["trainer"]["callbacks"] = callbacks + [
        {"class_path": "lightning_xllama.callbacks.MetricsSummary"}
    ]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_test_runs_the_evaluations_on_their_test_sets_and_prints_the_scores(demo_root, tmp_path):
    result = run_cli(
        [
            "test",
            "--config",
            str(small_evaluations(demo_root, tmp_path)),
            "--trainer.limit_test_batches",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Test metrics" in out and "test/loss" in out  # the held-out loss
    for metric in (
        "translation/en-syn_far/chrf_pp",
        "qa/syn_far/f1",
        "probe/en-syn_far/peak_layer",
    ):
        assert f"test/{metric}" in out, out[-3000:]
    assert "layer00" not in out  # per-layer probe curves stay in the logs
    assert not [n for n in NOISE if n in out + result.stderr], out + result.stderr
    log_dir = next((tmp_path / "runs" / "lightning_logs").iterdir())
    assert "test/translation/en-syn_far/bleu" in json.loads(
        (log_dir / "test_summary.json").read_text()
    )
    assert list((log_dir / "translation").glob("*test-step0.jsonl"))  # the outputs, tagged test


@pytest.fixture(scope="module")
def sgd_run(demo_root, tmp_path_factory):
    """``fit`` with ``--optimizer torch.optim.SGD`` on English instructions and pairs only, and
    ``seed_everything: 3``: its log folder."""
    root = tmp_path_factory.mktemp("sgd_run")
    result = run_cli(
        [
            "fit",
            "--config",
            "configs/demo.yaml",
            "--trainer.callbacks",
            "[]",
            "--trainer.callbacks+=lightning_xllama.callbacks.ResumableCheckpoint",
            "--trainer.max_steps",
            "3",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.val_check_interval",
            "3",
            "--trainer.default_root_dir",
            str(root / "runs"),
            "--data.init_args.batch_size",
            "2",
            "--data.init_args.weights",
            "{english: 1.0, translated: 0.0, parallel: 1.0}",
            "--seed_everything",
            "3",
            "--optimizer",
            "torch.optim.SGD",
            "--optimizer.lr",
            "0.05",
            "--optimizer.momentum",
            "0.9",
            "--optimizer.weight_decay",
            "0.01",
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [n for n in NOISE if n in result.stdout + result.stderr], result.stderr[-3000:]
    return next((root / "runs" / "lightning_logs").iterdir())


def test_optimizer_flag_trains_with_that_optimizer_and_the_package_schedule(sgd_run):
    checkpoint = torch.load(sgd_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert all(g["momentum"] == 0.9 and "nesterov" in g for g in groups)  # SGD's own settings
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]  # biases and norms: no decay
    schedule = checkpoint["lr_schedulers"][0]
    assert schedule["base_lrs"] == [0.05, 0.05]  # warm-up + cosine over SGD's learning rate
    assert schedule["_last_lr"][0] < 0.05
    assert checkpoint["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.SGD"


def test_run_record_shows_both_seeds_and_the_data_seed_follows_seed_everything(sgd_run):
    record = json.loads((sgd_run / "run.json").read_text())
    assert record["seeds"] == {"seed_everything": 3, "data": 3}
    assert record["data_plan"]["seed"] == 3
    assert yaml.safe_load((sgd_run / "config.yaml").read_text())["data"]["init_args"]["seed"] == 3


def test_export_from_another_folder_finds_the_base_model_and_writes_a_hub_card(
    sgd_run, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ckpt = shutil.copy(sgd_run / "checkpoints" / "last.ckpt", elsewhere / "x.ckpt")
    monkeypatch.chdir(elsewhere)  # the checkpoint saved the relative artifacts/demo/base_model
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "hf")])
    card_text = (tmp_path / "hf" / "README.md").read_text()
    from huggingface_hub import ModelCard

    card = ModelCard(card_text)
    assert card.data.model_name.startswith("Instruction-tuned llama (")  # not the folder's name
    assert "# Instruction-tuned base_model" not in card_text
    scores = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert scores[("held-out examples", "loss")] > 0  # no evaluation callback ran: the loss alone
    assert card.data.to_dict()["model-index"][0]["name"] == card.data.model_name
    assert "English instructions and translation pairs" in card_text
    assert "same instructions" not in card_text and "instructions in syn_far" not in card_text
    assert "| optimizer | torch.optim.SGD |" in card_text
    # a base model that is nowhere: the error says how to set it
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["run_record"]["model_folder"] = str(tmp_path / "gone")
    torch.save(checkpoint, elsewhere / "y.ckpt")
    with pytest.raises(SystemExit, match="pass --model"):
        main(["export", "--ckpt", str(elsewhere / "y.ckpt"), "--out", str(tmp_path / "hf2")])


def test_model_card_puts_the_final_scores_in_the_model_index():
    from huggingface_hub import ModelCard

    from lightning_xllama.export.model_card import model_card

    checkpoint = {
        "base_model": "meta-llama/Llama-2-7b-hf",
        "hyper_parameters": {"learning_rate": 2e-5},
        "datamodule_hyper_parameters": {
            "streams": [
                {"kind": "instructions", "lang": "en", "path": "en.json", "weight": 1.0},
                {"kind": "instructions", "lang": "zh", "path": "zh.json", "weight": 1.0},
            ]
        },
        "evaluation": {"val/translation/en-zh/bleu": 31.5, "val/probe/en-zh/layer03/x": 0.5},
    }
    card = ModelCard(model_card(checkpoint))
    assert card.data.model_name == "Instruction-tuned meta-llama/Llama-2-7b-hf"
    [result] = card.data.eval_results
    assert (result.dataset_name, result.metric_type, result.metric_value) == (
        "translation en-zh",
        "bleu",
        31.5,
    )
    assert "English instructions and instructions in zh;" in card.text


def test_optimizer_on_lora_builds_on_the_adapters_only(tiny_model, tiny_data):
    pytest.importorskip("peft")
    module = XLlamaModule(
        tiny_model,
        lora_rank=4,
        optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        lr_scheduler={
            "class_path": "torch.optim.lr_scheduler.StepLR",
            "init_args": {"step_size": 1, "gamma": 0.5},
        },
    )
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(module, datamodule=tiny_datamodule(tiny_model, tiny_data))
    [optimizer] = trainer.optimizers
    assert type(optimizer) is torch.optim.SGD
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert stepped == trainable and len(trainable) < len(list(module.parameters()))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)  # stepped every step


def test_a_class_that_is_no_optimizer_is_refused(tiny_model):
    with pytest.raises(ValueError, match="optimizer 'torch.nn.Linear' is not a Optimizer"):
        XLlamaModule(tiny_model, optimizer={"class_path": "torch.nn.Linear"})


class FirstBatchAndLosses(L.Callback):
    def __init__(self):
        self.first_batch, self.losses = None, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = batch["input_ids"].clone()
        self.losses.append(float(outputs["loss"]))


def _run(tiny_model, tiny_data, seed_everything: int, data_seed=None) -> FirstBatchAndLosses:
    L.seed_everything(seed_everything)
    datamodule = tiny_datamodule(tiny_model, tiny_data, seed=data_seed)
    assert datamodule.hparams.seed == (seed_everything if data_seed is None else data_seed)
    record = FirstBatchAndLosses()
    trainer = quiet_trainer(max_steps=2, callbacks=[record])
    trainer.fit(XLlamaModule(tiny_model, learning_rate=1e-3), datamodule=datamodule)
    return record


def test_the_data_seed_follows_seed_everything_unless_set(tiny_model, tiny_data, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    one, two, one_again = (_run(tiny_model, tiny_data, s) for s in (1, 2, 1))
    assert not torch.equal(one.first_batch, two.first_batch) and one.losses != two.losses
    assert torch.equal(one.first_batch, one_again.first_batch) and one.losses == one_again.losses
    # a data seed of its own holds the data order whatever seed_everything is
    fixed = [_run(tiny_model, tiny_data, s, data_seed=5).first_batch for s in (1, 2)]
    assert torch.equal(*fixed)


def test_usage_names_the_program_and_the_flags_say_what_they_set(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lightning_xllama [options] fit")
    assert "--optimizer" in out and "--lr_scheduler" in out


USED_THROUGH = {
    "protobuf": "transformers' conversion of SentencePiece tokenizers",
    "safetensors": "transformers' save_pretrained(safe_serialization=True)",
    "pyyaml": "imported as yaml",
}
IMPORT_NAMES = {"pyyaml": "yaml", "huggingface-hub": "huggingface_hub"}


def test_every_required_package_is_imported_by_the_package():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    required = [
        re.split(r"[<>=\[ ]", line.strip())[0]
        for line in config["options"]["install_requires"].strip().splitlines()
    ]
    imported = set()
    for path in (REPO / "lightning_xllama").rglob("*.py"):
        imported |= set(re.findall(r"^\s*(?:import|from) (\w+)", path.read_text(), re.MULTILINE))
    unused = [
        name
        for name in required
        if IMPORT_NAMES.get(name, name).replace("-", "_") not in imported
        and name not in USED_THROUGH
    ]
    assert unused == [], f"required in setup.cfg but imported nowhere: {unused}"
    assert "torchdata" not in required
