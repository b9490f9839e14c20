"""The command line as a user runs it: the demo config, predict, print_config and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import run_cli


@pytest.fixture(scope="module")
def demo_run(demo_root):
    """A few steps of ``fit --config configs/demo.yaml`` on the tiny assets."""
    result = run_cli(
        [
            "fit",
            "--config",
            "configs/demo.yaml",
            "--trainer.max_steps",
            "4",
            "--trainer.val_check_interval",
            "2",
            "--data.init_args.batch_size",
            "4",
            "--trainer.log_every_n_steps",
            "1",
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_demo_config_trains_logs_checkpoints_and_exports(demo_run, demo_root):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runs = sorted((demo_root / "artifacts" / "demo" / "runs" / "lightning_logs").iterdir())
    log_dir = runs[-1]
    metrics = (log_dir / "metrics.csv").read_text()
    assert (
        "train/loss" in metrics
        and "val/loss" in metrics
        and "val/translation/en-syn_far/chrf_pp" in metrics
    )
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()
    assert "first (step)" in demo_run.stdout  # the summary table
    summary = json.loads((log_dir / "summary.json").read_text())
    assert (
        summary["val/translation/en-syn_far/chrf_pp"]["first"][0] == 0
    )  # measured before training
    # the exported folder loads through from_pretrained and matches the last checkpoint
    export = demo_root / "artifacts" / "demo" / "final_model"
    assert (export / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    state = torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[f"model.{name}"])
    assert tokenizer("the dog sees a cat.")["input_ids"][0] == tokenizer.bos_token_id


def test_fit_writes_the_run_record_and_every_export_copies_it(
    demo_run, demo_root, tmp_path, monkeypatch
):
    from lightning_xllama.commands.main import main
    from lightning_xllama.runtime.run_record import CHECKPOINT_KEY, read_run_record

    log_dir = sorted((demo_root / "artifacts" / "demo" / "runs" / "lightning_logs").iterdir())[-1]
    record = read_run_record(log_dir / "run.json")
    assert (
        record["status"] == "finished"
        and record["log_dir"] == str(log_dir.resolve())
        and record["global_step"] == 4
    )
    assert record["model_path"] == "artifacts/demo/base_model" and record["template"] == "alpaca"
    assert (
        record["pad_token"]["token"] == "<unk>" and "no pad token" in record["pad_token"]["reason"]
    )
    plan = record["data_plan"]
    assert [
        (s["name"], s["kind"], s["lang"], s["direction"], s["weight"]) for s in plan["streams"]
    ] == [
        ("english", "instructions", "en", None, 1.0),
        ("translated", "instructions", "syn_far", None, 1.0),
        ("parallel", "parallel", "syn_far", "en-x", 3.0),
    ]
    assert sum(s["epoch_examples"] for s in plan["streams"]) == plan["epoch_examples"] > 0
    assert plan["stop"] == "total" and plan["seed"] == 42 and plan["max_length"] == 256
    assert plan["batching"]["batch_size"] == 4 and plan["batching"]["mode"] == "pad"
    report = record["data_report"]
    assert [s["name"] for s in report["streams"]] == ["english", "translated", "parallel"]
    assert all(
        s["units"] >= s["usable"] > s["held_out"] == min(32, s["usable"] // 10)
        for s in report["streams"]
    )
    validation = report["validation"]
    assert validation["encoded"] + sum(validation["dropped"].values()) == sum(
        s["held_out"] for s in report["streams"]
    )
    assert report["training"]["encoded"] == 4 * 4  # 4 steps of 4 examples
    assert (
        record["training_settings"]["effective_batch_size"] == 4
        and "val/loss" in record["evaluation"]
    )
    # the checkpoint holds the record and the DataModule's plan; both exports copy the record
    checkpoint = torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (
        checkpoint["CoITDataModule"]["data_plan"] == plan
        and checkpoint[CHECKPOINT_KEY]["data_plan"] == plan
    )
    exported = read_run_record(demo_root / "artifacts" / "demo" / "final_model")  # HFExport
    assert exported["data_plan"] == plan and exported["status"] == "finished"
    monkeypatch.chdir(demo_root)  # the checkpoint names its base model relative to the run's folder
    main(
        [
            "export",
            "--ckpt",
            str(log_dir / "checkpoints" / "last.ckpt"),
            "--out",
            str(tmp_path / "hf"),
        ]
    )
    from_command = read_run_record(tmp_path / "hf")
    assert from_command["data_plan"] == plan and from_command["log_dir"] == record["log_dir"]
    assert from_command["global_step"] == checkpoint["global_step"]


def test_a_demo_run_records_its_language_plug_in_and_evaluate_loads_it(demo_run, demo_root):
    """The demo's languages come from a plug-in the config names (``language_modules``): the run
    records it, and ``evaluate`` on the exported folder, in a fresh process, imports it."""
    from lightning_xllama.runtime.run_record import read_run_record

    export = demo_root / "artifacts" / "demo" / "final_model"
    assert read_run_record(export)["language_modules"] == ["lightning_xllama.demo.languages"]
    evaluation = {
        "class_path": "TranslationEvaluation",
        "init_args": {
            "directions": ["en-syn_far"],
            "test_prefix": "artifacts/demo/data/eval/translation/en-syn_far/test",
            "max_samples": 2,
            "batch_size": 2,
            "max_new_tokens": 4,
        },
    }
    result = run_cli(
        [
            "evaluate",
            "--model",
            str(export),
            "--evaluations",
            json.dumps([evaluation]),
            "--output_dir",
            str(demo_root / "evaluate_demo"),
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((demo_root / "evaluate_demo" / "report.json").read_text())
    assert "translation/en-syn_far/off_target" in report["metrics"]


def test_predict_writes_one_output_per_input(demo_root, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps(
                {
                    "instruction": "what is the subject of this sentence?",
                    "input": f"the dog sees {i} cats.",
                }
            )
            for i in range(5)
        )
        + "\n"
    )
    out = tmp_path / "answers.jsonl"
    result = run_cli(
        [
            "predict",
            "--config",
            "configs/demo.yaml",
            "--data.init_args.predict_file",
            str(prompts),
            "--data.init_args.eval_batch_size",
            "2",
            "--model.init_args.max_new_tokens",
            "4",
            "--output",
            str(out),
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == list(range(5))
    assert all(
        isinstance(r["response"], str) and r["input"] == f"the dog sees {r['id']} cats."
        for r in records
    )

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("the dog sees a cat.\na bird finds the tree.\nthe king holds a cup.\n")
    result = run_cli(
        [
            "predict",
            "--config",
            "configs/demo.yaml",
            "--data.init_args.predict_file",
            str(sentences),
            "--data.init_args.predict_direction",
            "en-syn_far",
            "--model.init_args.max_new_tokens",
            "4",
            "--output",
            str(out),
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and "Farish" in records[0]["instruction"]


def test_print_config_round_trips(demo_root, tmp_path):
    first = run_cli(["fit", "--config", "configs/demo.yaml", "--print_config"], cwd=demo_root)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "printed.yaml").write_text(first.stdout)
    second = run_cli(
        ["fit", "--config", str(tmp_path / "printed.yaml"), "--print_config"], cwd=demo_root
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert yaml.safe_load(first.stdout) == yaml.safe_load(second.stdout)
    config = yaml.safe_load(first.stdout)
    assert (
        config["model"]["init_args"]["learning_rate"] == 7e-4
    )  # the demo's value, not the default
    assert (
        "tokenizer" not in config["data"]["init_args"]
    )  # derived from the model path, not set twice


@pytest.mark.parametrize(
    "override, message",
    [
        (["--model.init_args.lerning_rate", "1e-3"], "lerning_rate"),
        (["--data.init_args.batch_size", "many"], "batch_size"),
        (["--model.init_args.model_name_or_path", "missing/base/model"], "prepare-demo"),
        (
            ["--trainer.strategy", "lightning_xllama.training.strategies.NoSuchStrategy"],
            "NoSuchStrategy",
        ),
    ],
)
def test_bad_configs_fail_before_any_work_and_say_why(demo_root, override, message):
    result = run_cli(["fit", "--config", "configs/demo.yaml", *override], cwd=demo_root)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Epoch" not in result.stderr  # nothing trained


def test_tokenizer_without_pad_token_gets_one_and_says_so(tiny_model, caplog):
    from transformers import AutoTokenizer

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    assert AutoTokenizer.from_pretrained(tiny_model).pad_token is None
    with caplog.at_level("INFO", logger="lightning_xllama.runtime.hf_loading"):
        tokenizer = load_tokenizer(tiny_model)
    assert tokenizer.pad_token == tokenizer.unk_token == "<unk>"
    assert "no pad token" in caplog.text


def test_unknown_command_lists_the_commands(demo_root):
    result = run_cli(["trian"], cwd=demo_root)
    assert result.returncode != 0 and "fit" in result.stderr and "prepare-demo" in result.stderr


def test_a_strategy_named_by_its_class_path_alone_is_built(demo_root, monkeypatch):
    """``--trainer.strategy pkg.Class`` with no init_args after it (jsonargparse keeps it a string)."""
    from lightning_xllama.commands.fit import XLlamaCLI
    from lightning_xllama.training.strategies import DecoderFSDP2Strategy

    monkeypatch.chdir(demo_root)
    cli = XLlamaCLI(
        args=[
            "--config",
            "configs/demo.yaml",
            "--trainer.strategy",
            "lightning_xllama.strategies.DecoderFSDP2Strategy",
            "--trainer.accelerator",
            "cpu",
        ],
        run=False,
    )
    assert type(cli.trainer.strategy) is DecoderFSDP2Strategy
