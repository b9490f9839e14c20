"""A language the package does not ship, registered from the user's module named in a config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fit_configs import TWO_QUIET_STEPS, fit_config, write_config
from paths import helper_env

from lightning_xllama.data import CoITDataModule
from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.languages import get_language, import_language_modules


def test_swahili_from_a_user_module_trains_a_few_steps(tiny_model, tmp_path):
    import_language_modules(["swahili_language"])  # to generate its corpora here
    assert get_language("sw").name == "Swahili"
    paths = SyntheticWorld(["sw"], seed=1).write(tmp_path / "data", 10, 60, 80, 10, 2)
    data = {
        "language": "sw",
        "language_modules": ["swahili_language"],
        "english_instructions": paths["instructions/en"],
        "translated_instructions": paths["instructions/sw"],
        "parallel": paths["parallel/sw"] + "/train",
        "batch_size": 4,
        "cache_dir": str(tmp_path / "cache"),
    }
    config = fit_config(
        tiny_model, "lightning_xllama.data.CoITDataModule", data, seed=None, **TWO_QUIET_STEPS
    )
    write_config(tmp_path / "sw.yaml", config)
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
