"""Stream kinds are a registry: the built-in ``instructions`` and ``parallel`` kinds, and a kind
of the user's own (a dialogue stream, ``tests/helpers/dialogue_kind.py``) registered from the
module a config names and trained through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fit_configs import fit_config, write_config
from paths import helper_env

from lightning_xllama.data import MuITDataModule, Stream
from lightning_xllama.data.index import build_index
from lightning_xllama.data.kinds import (
    InstructionKind,
    StreamKind,
    get_stream_kind,
    known_stream_kinds,
    register_stream_kind,
)
from lightning_xllama.demo.layout import DataLayout

DIALOGUES = [
    ["Hello there.", "Hello! How can I help?", "Name a colour.", "Blue."],
    ["What is two plus two?", "Four."],
    ["Say yes.", ""],  # an empty turn: skipped and counted
    ["What is two plus two?", "Four."],  # a duplicate: skipped with dedupe
] + [[f"Count to {n}.", " ".join(str(k) for k in range(1, n + 1))] for n in range(1, 40)]


def write_dialogues(path: Path) -> Path:
    path.write_text("".join(json.dumps({"turns": turns}) + "\n" for turns in DIALOGUES))
    return path


def test_built_in_kinds_are_registered_objects():
    assert {"instructions", "parallel"} <= set(known_stream_kinds())
    parallel = get_stream_kind("parallel")
    assert parallel.multiplicity("both") == 2 and parallel.multiplicity("x-en") == 1
    assert parallel.label("zh", "both") == "parallel:zh:both"
    assert get_stream_kind("instructions").label("zh", "both") == "instructions:zh"
    # dedupe compares the sentences, not a TSV's score
    assert parallel.hash(("a", "b", "1.2")) == parallel.hash(("a", "b", "1.5"))
    assert Stream("parallel", "zh", "train", direction="both").multiplicity == 2


def test_an_unknown_kind_names_the_registered_kinds_and_how_to_add_one(tmp_path):
    with pytest.raises(ValueError) as raised:
        Stream("dialog", "en", str(write_dialogues(tmp_path / "d.jsonl")))
    message = str(raised.value)
    assert "stream dialog:en: unknown stream kind 'dialog'" in message
    assert "registered kinds: " in message and "instructions, parallel" in message
    assert "register_stream_kind()" in message and "language_modules" in message


def test_a_kind_name_cannot_be_taken_by_another_class():
    class Other(InstructionKind):
        pass

    with pytest.raises(ValueError, match="'instructions' is already registered"):
        register_stream_kind(Other())
    with pytest.raises(ValueError, match="set `name`"):
        register_stream_kind(StreamKind())


def test_a_user_kind_parses_filters_and_makes_examples(tmp_path, tiny_model):
    path = write_dialogues(tmp_path / "dialogues.jsonl")
    datamodule = MuITDataModule(
        streams=[{"kind": "dialogue", "lang": "en", "path": str(path)}],
        language_modules=["dialogue_kind"],
        tokenizer=tiny_model,
        dedupe=True,
        val_examples_per_stream=0,
        cache_dir=str(tmp_path / "cache"),
    )
    datamodule.setup("validate")
    (reader,) = datamodule.readers
    assert reader.stream.label == "dialogue:en"
    assert reader.index.skipped == {"empty turn": 1, "duplicate": 1}
    assert reader.index.skipped_at["empty turn"] == [f"{path}:3"]
    first = {e.output: e for e in (reader.example(i) for i in reader.items(0, 0, reader.size))}
    assert first["Blue."].instruction == "Name a colour."
    assert first["Blue."].input == "User: Hello there.\nAssistant: Hello! How can I help?"
    assert first["Four."].input == "" and first["Four."].task == "dialogue"
    assert len(first) == len(DIALOGUES) - 2
    plan = datamodule.data_plan()["streams"][0]
    assert plan["kind"] == "dialogue" and plan["direction"] is None

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": ["one turn only"]}\n')
    with pytest.raises(ValueError, match=f"{bad}:1: expected an object with 'turns'"):
        build_index(
            get_stream_kind("dialogue").open(Stream("dialogue", "en", str(bad))), "dialogue", "en"
        )


def test_a_dialogue_stream_from_a_user_module_trains_through_the_cli(
    tmp_path, tiny_model, tiny_data
):
    data = {
        "language_modules": ["dialogue_kind"],
        "streams": [
            {
                "kind": "dialogue",
                "lang": "en",
                "path": str(write_dialogues(tmp_path / "dialogues.jsonl")),
            },
            {
                "kind": "instructions",
                "lang": "en",
                "path": str(DataLayout(tiny_data).instructions("en")),
            },
        ],
        "batch_size": 4,
        "num_workers": 1,  # the kind reaches the loader's worker process
        "val_examples_per_stream": 2,
        "cache_dir": str(tmp_path / "cache"),
    }
    config = fit_config(
        tiny_model,
        "lightning_xllama.data.MuITDataModule",
        data,
        default_root_dir=str(tmp_path / "runs"),
        max_steps=2,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    write_config(tmp_path / "dialogue.yaml", config)
    # a fresh process, as a user runs it: only the config's language_modules registers the kind
    result = subprocess.run(
        [sys.executable, "-m", "lightning_xllama", "fit", "--config", "dialogue.yaml"],
        cwd=tmp_path,
        env=helper_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max_steps=2` reached" in result.stderr
    (record,) = (tmp_path / "runs").rglob("run.json")
    streams = json.loads(record.read_text())["data_plan"]["streams"]
    assert [(s["name"], s["kind"]) for s in streams] == [
        ("dialogue:en", "dialogue"),
        ("instructions:en", "instructions"),
    ]
