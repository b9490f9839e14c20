"""A language the package does not ship, registered from the user's module named in a config."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from paths import helper_env

from lightning_xllama.data import CoITDataModule
from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.languages import get_language, import_language_modules


def test_swahili_from_a_user_module_trains_a_few_steps(tiny_model, tmp_path):
    import_language_modules(["swahili_language"])  # to generate its corpora here
    assert get_language("sw").name == "Swahili"
    paths = SyntheticWorld(["sw"], seed=1).write(tmp_path / "data", 10, 60, 80, 10, 2)
    config = {
        "model": {
            "class_path": "lightning_xllama.model.XLlamaModule",
            "init_args": {"model_name_or_path": tiny_model},
        },
        "data": {
            "class_path": "lightning_xllama.data.CoITDataModule",
            "init_args": {
                "language": "sw",
                "language_modules": ["swahili_language"],
                "english_instructions": paths["instructions/en"],
                "translated_instructions": paths["instructions/sw"],
                "parallel": paths["parallel/sw"] + "/train",
                "batch_size": 4,
                "cache_dir": str(tmp_path / "cache"),
            },
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 2,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
        },
    }
    (tmp_path / "sw.yaml").write_text(yaml.safe_dump(config))
    # a fresh process, as a user runs it: only the config's language_modules registers Swahili
    env = helper_env()
    result = subprocess.run(
        [sys.executable, "-m", "lightning_xllama", "fit", "--config", str(tmp_path / "sw.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max_steps=2` reached" in result.stderr

    datamodule = CoITDataModule(**config["data"]["init_args"], tokenizer=tiny_model)
    datamodule.setup("fit")
    parallel = datamodule.readers[2]
    assert all("Swahili" in parallel.example(item).instruction for item in parallel.items(0, 0, 20))


def test_a_missing_language_module_is_named(tmp_path):
    with pytest.raises(
        ImportError, match="language module 'no_such_language_module' could not be imported"
    ):
        CoITDataModule(
            language="sw",
            english_instructions="en.json",
            translated_instructions="sw.json",
            parallel="train",
            language_modules=["no_such_language_module"],
        )
