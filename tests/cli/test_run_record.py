"""The run record's schema: what ``run.json`` holds, written and read back."""

from __future__ import annotations

import json

import pytest

from lightning_xllama.runtime.run_record import (
    RUN_RECORD_FILE,
    SCHEMA_VERSION,
    RunRecordDict,
    read_run_record,
    write_run_record,
)


def sample_record() -> RunRecordDict:
    stream = {
        "name": "parallel",
        "kind": "parallel",
        "lang": "syn_far",
        "path": "data/train",
        "format": "text",
        "direction": "en-x",
        "weight": 3.0,
        "count": None,
        "epoch_examples": 120,
    }
    counts = {"encoded": 30, "truncated": 1, "dropped": {"longer than max_length": 2}}
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "finished",
        "started": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:10:00+00:00",
        "log_dir": "runs/lightning_logs/version_0",
        "ckpt_path": None,
        "global_step": 4,
        "epoch": 0,
        "model_path": "artifacts/demo/base_model",
        "model_folder": "/home/user/xllama/artifacts/demo/base_model",
        "seeds": {"seed_everything": 1, "data": 1},
        "language_modules": [],
        "template": "alpaca",
        "pad_token": {
            "token": "<unk>",
            "id": 0,
            "reason": "the tokenizer has no pad token; its UNK token pads",
        },
        "data_plan": {
            "datamodule": "lightning_xllama.data.datamodule.CoITDataModule",
            "streams": [stream],
            "epoch_examples": 120,
            "stop": "total",
            "examples_per_epoch": None,
            "seed": 42,
            "max_length": 256,
            "overflow": "truncate",
            "dedupe": False,
            "val_examples_per_stream": 32,
            "batching": {
                "mode": "pad",
                "batch_size": 4,
                "group_batches": 64,
                "pack_length": None,
                "pad_to_multiple_of": 1,
                "num_workers": 0,
                "world_size": 1,
                "batches_per_epoch": 30,
            },
        },
        "data_report": {
            "streams": [
                {
                    "name": "parallel",
                    "units": 200,
                    "usable": 199,
                    "skipped": {"duplicate": 1},
                    "held_out": 19,
                    "pass_examples": 180,
                    "validation": counts,
                }
            ],
            "validation": counts,
            "training": {"encoded": 16, "truncated": 0, "dropped": {}},
        },
        "training_settings": {"world_size": 1, "effective_batch_size": 4},
        "evaluation": {"val/loss": 2.5},
        "skipped_steps": 0,
        "error": None,  # with diverged and failed: the exception's line
        "last_saved_step": None,  # with stopped
    }


def test_a_run_record_round_trips_through_run_json(tmp_path):
    record = sample_record()
    path = write_run_record(record, tmp_path / "run")
    assert path == tmp_path / "run" / RUN_RECORD_FILE and not list(
        (tmp_path / "run").glob("*.partial")
    )
    assert (
        read_run_record(path) == record == read_run_record(tmp_path / "run")
    )  # the file or its folder
    assert set(record) == set(
        RunRecordDict.__annotations__
    )  # the sample holds every documented field


def test_reading_refuses_a_newer_schema_and_a_file_that_is_no_record(tmp_path):
    (tmp_path / "run.json").write_text(
        json.dumps({**sample_record(), "schema_version": SCHEMA_VERSION + 1})
    )
    with pytest.raises(ValueError, match=f"schema {SCHEMA_VERSION + 1}"):
        read_run_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"status": "finished"}))
    with pytest.raises(ValueError, match="not a run record"):
        read_run_record(tmp_path)
