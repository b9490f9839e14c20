"""A user's YAML ``fit`` config as the tests write it: the tiny model, a data module and a trainer
on one CPU device; :func:`coit_fit_config` for a small CoIT run on the tiny demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from lightning_xllama.demo.layout import DataLayout

DEMO_LANGUAGES = ("lightning_xllama.demo.languages",)
"""The demo plug-in, registering ``syn_near`` and ``syn_far``, as a config's ``language_modules``."""

TWO_QUIET_STEPS = {
    "max_steps": 2,
    "logger": False,
    "enable_checkpointing": False,
    "num_sanity_val_steps": 0,
    "limit_val_batches": 0,
}
"""Trainer settings of a run that only has to train: two steps, no logger, checkpoint or
validation."""


def fit_config(
    model: str,
    data_class: str,
    data: dict,
    *,
    seed: Optional[int] = 1,
    learning_rate: Optional[float] = None,
    **trainer,
) -> dict:
    """``XLlamaModule`` of ``model`` (at ``learning_rate`` when one is given), the data module
    ``data_class`` with init args ``data``, and a trainer on one CPU device without a progress bar,
    with ``trainer`` added; ``seed_everything`` is ``seed`` (left out when None)."""
    model_args = {"model_name_or_path": model}
    if learning_rate is not None:
        model_args["learning_rate"] = learning_rate
    config = {} if seed is None else {"seed_everything": seed}
    config["model"] = {"class_path": "lightning_xllama.model.XLlamaModule", "init_args": model_args}
    config["data"] = {"class_path": data_class, "init_args": data}
    config["trainer"] = {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        **trainer,
    }
    return config


def coit_fit_config(
    folder: Path,
    tiny_model: str,
    tiny_data: Path,
    *,
    learning_rate: Optional[float] = None,
    language_modules: Optional[tuple[str, ...]] = DEMO_LANGUAGES,
    data: Optional[dict] = None,
    **trainer,
) -> dict:
    """A small CoIT run of ``syn_far`` on the demo layout's files under ``tiny_data``, caching under
    ``folder / "cache"`` and logging under ``folder / "runs"``: ``data`` adds to (or replaces) the
    data module's init args and ``trainer`` the trainer's (:func:`fit_config`'s); no
    ``language_modules`` key when ``language_modules`` is None."""
    layout = DataLayout(tiny_data)
    init_args = {
        "language": "syn_far",
        "english_instructions": str(layout.instructions("en")),
        "translated_instructions": str(layout.instructions("syn_far")),
        "parallel": str(layout.parallel("syn_far")),
        "cache_dir": str(Path(folder) / "cache"),
    }
    if language_modules is not None:
        init_args["language_modules"] = list(language_modules)
    trainer.setdefault("default_root_dir", str(Path(folder) / "runs"))
    return fit_config(
        tiny_model,
        "lightning_xllama.data.CoITDataModule",
        {**init_args, **(data or {})},
        learning_rate=learning_rate,
        **trainer,
    )


def write_config(path: Path, config: dict) -> Path:
    """``config`` written to ``path`` as YAML; returns ``path``."""
    path.write_text(yaml.safe_dump(config))
    return path
