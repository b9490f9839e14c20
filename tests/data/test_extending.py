"""Extending the package from a user's own module (``docs/extending.md`` quotes this file): a
language registered, a data module subclass with an argument of its own, and a callback, trained
together for 2 steps through the command line's class."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import lightning as L
from fit_configs import TWO_QUIET_STEPS, fit_config, write_config

from lightning_xllama.commands.fit import XLlamaCLI
from lightning_xllama.data import CoITDataModule
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.languages import Language, register

# --- a language of your own --------------------------------------------------------------------
SCOTS = register(Language("sco", "Scots", "Latn"))


# --- a data module for it --------------------------------------------------------------------
class ScotsCoIT(CoITDataModule):
    """CoIT for Scots, with the pairs' share of the mix as an argument of its own.

    Args:
        english_instructions: Alpaca JSON or JSONL file of English instructions.
        translated_instructions: the same instructions in Scots.
        parallel: English-Scots pairs (``{parallel}.en`` and ``{parallel}.sco``).
        pair_share: weight of the pairs against 1 for each instruction stream.
        batch_size: examples per micro-batch on each device.
        tokenizer: tokenizer folder or hub name (the CLI links it to the model's path).
        cache_dir: where source indexes are cached.
    """

    def __init__(
        self,
        english_instructions: str,
        translated_instructions: str,
        parallel: str,
        pair_share: float = 2.0,
        batch_size: int = 4,
        tokenizer: Optional[str] = None,
        cache_dir: Optional[str] = None,
    ):
        super().__init__(
            language="sco",
            english_instructions=english_instructions,
            translated_instructions=translated_instructions,
            parallel=parallel,
            weights={"english": 1.0, "translated": 1.0, "parallel": pair_share},
            batch_size=batch_size,
            tokenizer=tokenizer,
            cache_dir=cache_dir,
        )


# --- a callback ----------------------------------------------------------------------------------
class CountSteps(L.Callback):
    """Count the optimizer steps of a run and print the count every ``every`` steps.

    Args:
        every: steps between two prints.
    """

    def __init__(self, every: int = 1):
        self.every, self.steps = every, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps = trainer.global_step
        if trainer.is_global_zero and self.steps % self.every == 0:
            print(f"step {self.steps}")


def scots_files(tiny_data: Path, folder: Path) -> dict[str, str]:
    """The demo's English instructions and a target language's files, named as Scots ones."""
    layout, folder = DataLayout(tiny_data), Path(folder)
    folder.mkdir(parents=True)
    shutil.copy(layout.instructions("en"), folder / "en.json")
    shutil.copy(layout.instructions("syn_far"), folder / "sco.json")
    pairs = Path(layout.parallel("syn_far"))
    shutil.copy(f"{pairs}.en", folder / "train.en")
    shutil.copy(f"{pairs}.syn_far", folder / "train.sco")
    return {
        "english_instructions": str(folder / "en.json"),
        "translated_instructions": str(folder / "sco.json"),
        "parallel": str(folder / "train"),
    }


def test_a_subclass_with_its_own_argument_trains_through_the_cli_and_reloads(
    tiny_model, tiny_data, tmp_path
):
    data = {
        **scots_files(tiny_data, tmp_path / "data"),
        "pair_share": 3.0,
        "batch_size": 2,
        "cache_dir": str(tmp_path / "cache"),
    }
    config = fit_config(
        tiny_model,
        f"{__name__}.ScotsCoIT",
        data,
        seed=None,
        callbacks=[{"class_path": f"{__name__}.CountSteps", "init_args": {"every": 1}}],
        default_root_dir=str(tmp_path / "runs"),  # config.yaml and run.json go there
        **TWO_QUIET_STEPS,
    )
    write_config(tmp_path / "sco.yaml", config)
    cli = XLlamaCLI(args=["fit", "--config", str(tmp_path / "sco.yaml")])

    assert cli.trainer.global_step == 2
    assert next(c for c in cli.trainer.callbacks if isinstance(c, CountSteps)).steps == 2
    datamodule = cli.datamodule
    assert type(datamodule) is ScotsCoIT and datamodule.hparams.tokenizer == tiny_model
    plan = datamodule.data_plan()
    assert [(s["lang"], s["weight"]) for s in plan["streams"]] == [
        ("en", 1.0),
        ("sco", 1.0),
        ("sco", 3.0),
    ]
    parallel = datamodule.readers[2]
    assert "Scots" in parallel.example(next(parallel.items(0, 0, 1))).instruction

    checkpoint = tmp_path / "two_steps.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    reloaded = ScotsCoIT.load_from_checkpoint(checkpoint, weights_only=True)
    assert reloaded.hparams.pair_share == 3.0
    assert reloaded.hparams["streams"] == datamodule.hparams["streams"]  # always saved
    assert reloaded.data_plan()["streams"] == [
        {**s, "epoch_examples": None} for s in plan["streams"]
    ]
