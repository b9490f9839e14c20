"""Every shipped config parses and instantiates on CPU, and the 7B recipes hold the published set-up.

The 7B recipes are a base (``configs/x-llama-7b.yaml``) and one overlay per language, m-LLaMA and
LoRA (``configs/x-llama-7b/*.yaml``), stacked with several ``--config``. Each file is tested as the
``fit`` command in its header stacks it, so a new overlay is tested without editing this file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from lightning.pytorch.strategies import SingleDeviceStrategy
from paths import REPO

from lightning_xllama.callbacks import (
    HFExport,
    QAEvaluation,
    ResumableCheckpoint,
    TranslationEvaluation,
)
from lightning_xllama.commands.fit import XLlamaCLI
from lightning_xllama.data import CoITDataModule, MuITDataModule
from lightning_xllama.languages import MLQA_LANGUAGES
from lightning_xllama.training.strategies import DecoderFSDP2Strategy

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
BASE = REPO / "configs" / "x-llama-7b.yaml"
LANGUAGES = ["ar", "el", "hi", "tr", "vi", "zh"]
# The recipes are written for 8 GPUs; on this machine the trainer is overridden to one CPU process.
CPU_TRAINER = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.num_nodes=1",
    "--trainer.strategy=auto",
]


def documented_stack(config: Path) -> list[Path]:
    """The ``--config`` files of the first ``fit`` command in ``config``'s header comment, in
    order (``[config]`` when the header has none)."""
    header = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    command = " ".join(header).replace("\\ ", " ")
    match = re.search(r"lightning_xllama fit ((?:--config \S+\s*)+)", command)
    if match is None:
        return [config]
    words = shlex.split(match.group(1))
    return [REPO / path for flag, path in zip(words[::2], words[1::2]) if flag == "--config"]


STACKS = {c: documented_stack(c) for c in CONFIGS}
RUNNABLE = [c for c in CONFIGS if STACKS[c][-1] == c]  # demo.yaml and every overlay
RECIPES = [c for c in RUNNABLE if c.parent.name == BASE.stem]
FULL_TUNING = [c for c in RECIPES if not c.stem.endswith("-lora")]


def stack_args(stack: list[Path], tiny_model: str, *overrides: str) -> list[str]:
    configs = [arg for path in stack for arg in ("--config", str(path))]
    return [*configs, f"--model.init_args.model_name_or_path={tiny_model}", *overrides]


def instantiate(stack: list[Path], tiny_model: str, *overrides: str) -> XLlamaCLI:
    """Parse the stacked configs and build the model, data module, trainer and callbacks (nothing
    runs and no data is read)."""
    return XLlamaCLI(args=stack_args(stack, tiny_model, *overrides), run=False)


@pytest.fixture(scope="module")
def parser(tiny_model, tmp_path_factory, monkeypatch_module):
    """The CLI's own parser, to read a recipe as shipped (8 GPUs) without building it."""
    monkeypatch_module.chdir(tmp_path_factory.mktemp("parser"))
    return instantiate([REPO / "configs" / "demo.yaml"], tiny_model).parser


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def resolved(parser, stack: list[Path], tiny_model: str) -> dict:
    """The stacked recipe as the CLI resolves it: one dict, the later files' values applied."""
    config = parser.parse_args(stack_args(stack, tiny_model))
    return config.as_dict()


def test_every_config_is_run_alone_or_under_an_overlay():
    """The header's command is checked against the files: a base is tested through its overlays."""
    for config, stack in STACKS.items():
        assert all(path.is_file() for path in stack), f"{config}: header names {stack}"
    stacked = {path for stack in STACKS.values() for path in stack}
    assert stacked == set(CONFIGS)
    assert {c.stem for c in RECIPES} >= {*LANGUAGES, "m-llama", "zh-lora"}
    assert all(STACKS[c][0] == BASE for c in RECIPES)
    assert (
        STACKS[REPO / "configs" / "x-llama-7b" / "zh-lora.yaml"][:-1]
        == STACKS[REPO / "configs" / "x-llama-7b" / "zh.yaml"]
    )


@pytest.mark.parametrize("config", RUNNABLE, ids=[c.stem for c in RUNNABLE])
def test_config_parses_and_instantiates_on_cpu_with_a_tiny_model(
    config, tiny_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # relative paths (logs, exports) land here
    cli = instantiate(STACKS[config], tiny_model, *CPU_TRAINER)
    assert isinstance(cli.trainer.strategy, SingleDeviceStrategy) and cli.trainer.num_devices == 1
    assert cli.model.hparams.model_name_or_path == tiny_model
    assert cli.datamodule.hparams.tokenizer == tiny_model  # linked to the model
    assert any(isinstance(c, TranslationEvaluation) for c in cli.trainer.callbacks)
    if config in RECIPES:  # each recipe writes into its own run folder
        run = (
            f"runs/{config.stem}-7b"
            if config.stem == "m-llama"
            else f"runs/x-llama-7b-{config.stem}"
        )
        checkpoint = next(c for c in cli.trainer.callbacks if isinstance(c, ResumableCheckpoint))
        export = next(c for c in cli.trainer.callbacks if isinstance(c, HFExport))
        assert Path(cli.trainer.default_root_dir).resolve() == tmp_path / run
        assert Path(checkpoint.dirpath) == tmp_path / run / "checkpoints"
        assert export.output_dir == f"{run}/hf_model"
        # the paper's metrics are on, and a placeholder path stops the run before any work
        for evaluation in (
            c for c in cli.trainer.callbacks if isinstance(c, TranslationEvaluation)
        ):
            assert evaluation.comet_model.endswith("wmt22-comet-da")
            assert evaluation.bleurt_model.endswith("BLEURT-20")
            assert evaluation.spm_model.endswith("sacrebleu_tokenizer_spm.model")
            assert evaluation.spm_name == "flores101"
            with pytest.raises(
                FileNotFoundError, match="spm_model: .*still the recipe's placeholder"
            ):
                evaluation.prepare()


def check_published_set_up(recipe: dict) -> None:
    """The paper's CoIT/MuIT set-up, read from a resolved recipe."""
    model, data, trainer = recipe["model"]["init_args"], recipe["data"], recipe["trainer"]
    init = data["init_args"]
    assert (model["learning_rate"], model["weight_decay"], model["warmup_ratio"]) == (2e-5, 0, 0.03)
    assert model["min_lr_ratio"] == 0.0  # cosine to zero
    assert trainer["max_epochs"] == 3 and trainer["precision"] == "bf16-mixed"
    assert trainer["strategy"]["class_path"] == "lightning_xllama.strategies.DecoderFSDPStrategy"
    assert init["max_length"] == 512 and init["template"] == "alpaca_official"
    batch = (init["batch_size"], trainer["accumulate_grad_batches"], trainer["devices"])
    assert batch == (4, 4, 8) and trainer["num_nodes"] == 1  # 4 x 4 x 8 x 1 = 128
    callbacks = {
        c["class_path"].rsplit(".", 1)[1]: c.get("init_args", {}) for c in trainer["callbacks"]
    }
    assert callbacks["TranslationEvaluation"]["flores_split"] == "devtest"
    assert callbacks["TranslationEvaluation"]["flores_version"] == "flores101"
    assert "ResumableCheckpoint" in callbacks and "HFExport" in callbacks
    qa = [c["init_args"] for c in trainer["callbacks"] if c["class_path"].endswith("QAEvaluation")]
    xquad = {lang for q in qa if q["xquad_dir"] for lang in q["languages"]}
    mlqa = {lang for q in qa if q["mlqa_dir"] for lang in q["languages"]}
    if data["class_path"].endswith("CoITDataModule"):  # English + translated Alpaca + en->X pairs
        lang = init["language"]
        assert init["direction"] == "en-x" and init["translated_instructions"].endswith(
            f"_{lang}.json"
        )
        assert init["parallel"].endswith(f"/en-{lang}/train")
        assert callbacks["TranslationEvaluation"]["directions"] == [f"en-{lang}", f"{lang}-en"]
        languages = {lang}
    else:
        streams = {(s["kind"], s["lang"]) for s in init["streams"]}
        assert streams == {("instructions", "en")} | {
            (k, lang) for lang in LANGUAGES for k in ("instructions", "parallel")
        }
        languages = set(LANGUAGES)
    assert xquad == languages
    assert mlqa == languages & set(MLQA_LANGUAGES)  # MLQA has no Greek or Turkish


@pytest.mark.parametrize("config", FULL_TUNING, ids=[c.stem for c in FULL_TUNING])
def test_recipe_holds_the_published_set_up(config, parser, tiny_model):
    check_published_set_up(resolved(parser, STACKS[config], tiny_model))


def test_a_new_language_is_one_short_overlay(parser, tiny_model, tmp_path, monkeypatch):
    """German, a language no recipe ships: a copy of the Arabic overlay with its code changed."""
    overlay = tmp_path / "de.yaml"
    text = (REPO / "configs" / "x-llama-7b" / "ar.yaml").read_text()
    overlay.write_text(re.sub(r"(?<![a-z])ar(?![a-z])", "de", text).replace("Arabic", "German"))
    assert len(text.splitlines()) <= 20
    recipe = resolved(parser, [BASE, overlay], tiny_model)
    check_published_set_up(recipe)
    assert recipe["data"]["init_args"]["language"] == "de"
    monkeypatch.chdir(tmp_path)
    cli = instantiate([BASE, overlay], tiny_model, *CPU_TRAINER)
    qa = next(c for c in cli.trainer.callbacks if isinstance(c, QAEvaluation))
    assert qa.languages == ["de"] and qa.mlqa_dir == "/path/to/MLQA_V1"


def test_m_llama_shares_the_base(parser, tiny_model, tmp_path, monkeypatch):
    """m-LLaMA changes the data module and the evaluation; the rest is the base's."""
    m_llama = REPO / "configs" / "x-llama-7b" / "m-llama.yaml"
    base = resolved(parser, [BASE, REPO / "configs" / "x-llama-7b" / "zh.yaml"], tiny_model)
    recipe = resolved(parser, STACKS[m_llama], tiny_model)
    assert recipe["model"] == base["model"]
    shared = {
        k: v for k, v in recipe["trainer"].items() if k not in ("callbacks", "default_root_dir")
    }
    assert shared == {k: base["trainer"][k] for k in shared}
    for key in ("stop", "template", "max_length", "batch_size", "num_workers"):
        assert recipe["data"]["init_args"][key] == base["data"]["init_args"][key]
    monkeypatch.chdir(tmp_path)
    cli = instantiate(STACKS[m_llama], tiny_model, *CPU_TRAINER)
    assert isinstance(cli.datamodule, MuITDataModule)
    assert {c.name for c in cli.trainer.callbacks if isinstance(c, QAEvaluation)} == {
        "xquad",
        "mlqa",
    }


def test_fsdp2_is_one_override_away(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = STACKS[FULL_TUNING[0]]
    with pytest.raises(ValueError, match="CUDA GPUs only.*DecoderFSDP2Strategy"):  # as shipped
        instantiate(stack, tiny_model, "--trainer.accelerator=cpu", "--trainer.devices=1")
    cli = instantiate(
        stack,
        tiny_model,
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.strategy.class_path=lightning_xllama.strategies.DecoderFSDP2Strategy",
    )
    strategy = cli.trainer.strategy
    assert isinstance(strategy, DecoderFSDP2Strategy)
    assert strategy.activation_checkpointing and strategy.param_dtype == "bf16"  # from the recipe
    assert any(isinstance(c, ResumableCheckpoint) for c in cli.trainer.callbacks)
    assert sum(isinstance(c, QAEvaluation) for c in cli.trainer.callbacks) == 1
    assert isinstance(cli.datamodule, CoITDataModule)


def test_lora_recipe_is_the_zh_set_up_on_one_gpu(parser, tiny_model, tmp_path, monkeypatch):
    """The LoRA recipe keeps the zh recipe's data and effective batch, on one GPU in bf16."""
    lora_stack = STACKS[REPO / "configs" / "x-llama-7b" / "zh-lora.yaml"]
    lora, full = (resolved(parser, s, tiny_model) for s in (lora_stack, lora_stack[:-1]))
    assert lora["data"] == full["data"]
    trainer, model = lora["trainer"], lora["model"]["init_args"]
    assert (trainer["devices"], trainer["strategy"], trainer["precision"]) == (
        1,
        "auto",
        "bf16-true",
    )
    assert lora["data"]["init_args"]["batch_size"] * trainer["accumulate_grad_batches"] == 128
    assert model["lora_rank"] and model["gradient_checkpointing"]
    evaluation = [c for c in trainer["callbacks"] if "Evaluation" in c["class_path"]]
    assert evaluation == [
        c for c in full["trainer"]["callbacks"] if "Evaluation" in c["class_path"]
    ]
    monkeypatch.chdir(tmp_path)
    cli = instantiate(lora_stack, tiny_model, "--trainer.accelerator=cpu")
    cli.model.configure_model()
    trainable = [n for n, p in cli.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)  # the base frozen
