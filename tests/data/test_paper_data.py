"""``paper: true`` on the data modules: the training data as the paper's run built it (x-LLM
``train.py`` and ``data/translation/translation.py``), each difference pinned against the
official behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from official_xllm import OFFICIAL, OFFICIAL_NAMES
from paths import REPO

from lightning_xllama.commands.fit import XLlamaCLI
from lightning_xllama.data import CoITDataModule, MuITDataModule
from lightning_xllama.data.encoding import IGNORE_INDEX, MASKED, encode_examples
from lightning_xllama.data.sources import Example

LINES = 40  # more than 33: the rotation wraps


def write_pairs(prefix: Path, lang: str, en: list[str], other: list[str]) -> str:
    Path(f"{prefix}.en").write_text("".join(f"{line}\n" for line in en), encoding="utf-8")
    Path(f"{prefix}.{lang}").write_text("".join(f"{line}\n" for line in other), encoding="utf-8")
    return str(prefix)


def parallel(tmp_path: Path, lang: str) -> str:
    """``LINES`` pairs; line 3 has an empty side (skipped, yet counted in the line index)."""
    en = [f"sentence {i} in English" for i in range(LINES)]
    other = [f"sentence {i} in {lang}" for i in range(LINES)]
    other[3] = ""
    return write_pairs(tmp_path / f"train-{lang}", lang, en, other)


def module(tmp_path: Path, tiny_model: str, streams: list[dict], **settings) -> MuITDataModule:
    return MuITDataModule(
        streams=streams, tokenizer=tiny_model, cache_dir=str(tmp_path / "cache"), **settings
    )


def training_examples(datamodule: MuITDataModule) -> list[list[tuple[int, Example]]]:
    """Each stream's training examples of one pass, with the unit (line) each comes from."""
    datamodule.setup("validate")
    return [
        [(item[0], reader.example(item)) for item in reader.items(0, 0, reader.size)]
        for reader in datamodule.readers
    ]


def test_official_paraphrase_of_line_i_is_instructions_i_mod_33_with_the_papers_names(
    tmp_path, tiny_model
):
    streams = [
        {"kind": "parallel", "lang": "zh", "path": parallel(tmp_path, "zh")},
        {"kind": "parallel", "lang": "el", "path": parallel(tmp_path, "el"), "direction": "both"},
    ]
    zh, el = training_examples(module(tmp_path, tiny_model, streams, paper=True))
    assert sorted(unit for unit, _ in zh) == [i for i in range(LINES) if i != 3]
    for unit, example in zh:
        assert example.instruction == OFFICIAL[unit % 33].format(
            source_lang=OFFICIAL_NAMES["en"], target_lang=OFFICIAL_NAMES["zh"]
        )
    assert len(el) == 2 * (LINES - 1)
    for unit, example in el:  # both directions: the names follow the direction, the line the same
        src, tgt = ("en", "el") if example.output.endswith("el") else ("el", "en")
        assert example.instruction == OFFICIAL[unit % 33].format(
            source_lang=OFFICIAL_NAMES[src], target_lang=OFFICIAL_NAMES[tgt]
        )
    by_unit = dict(zh)
    assert by_unit[34].instruction == "What do the following sentences mean in Chinese?"
    assert by_unit[0].instruction == "Translate the following sentences from English to Chinese."

    # the rule alone, without paper: true; the package's default draws its own paraphrases
    (alone,) = training_examples(
        module(tmp_path, tiny_model, streams[:1], translation_instructions="official")
    )
    assert dict(alone)[34].instruction == by_unit[34].instruction
    (package,) = training_examples(module(tmp_path, tiny_model, streams[:1]))
    assert any(e.instruction != by_unit[u].instruction for u, e in package)


def test_a_pair_with_surrounding_spaces_and_tabs_is_stripped_in_paper_mode_only(
    tmp_path, tiny_model
):
    en = ["  hello world\t", "plain line"]
    zh = ["\t你好 ", "平常"]
    streams = [
        {"kind": "parallel", "lang": "zh", "path": write_pairs(tmp_path / "p", "zh", en, zh)}
    ]
    (paper,) = training_examples(module(tmp_path, tiny_model, streams, paper=True))
    (plain,) = training_examples(module(tmp_path, tiny_model, streams))
    assert {u: (e.input, e.output) for u, e in paper}[0] == ("hello world", "你好")
    assert {u: (e.input, e.output) for u, e in plain}[0] == ("  hello world\t", "\t你好 ")
    (alone,) = training_examples(module(tmp_path, tiny_model, streams, strip_pairs=True))
    assert {u: (e.input, e.output) for u, e in alone}[0] == ("hello world", "你好")


def test_a_prompt_longer_than_max_length_is_kept_fully_masked_under_overflow_mask(tiny_model):
    from lightning_xllama.runtime.hf_loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    long = Example("word " * 200, "", "the answer", "instruction", "en")
    short = Example("Say hi.", "", "hi", "instruction", "en")
    full = encode_examples(tokenizer, [long], 4096, "truncate", "alpaca_official")[0]
    masked, kept = encode_examples(tokenizer, [long, short], 64, "mask", "alpaca_official")
    # train.py: tokenizer(text, max_length=512, truncation=True), labels[:source_len] = -100
    assert masked["input_ids"] == full["input_ids"][:64]
    assert masked["labels"] == [IGNORE_INDEX] * 64 and masked["masked"]
    assert kept == encode_examples(tokenizer, [short], 64, "truncate", "alpaca_official")[0]
    assert encode_examples(tokenizer, [long], 64, "truncate", "alpaca_official")[0] == {
        "dropped": "prompt alone reaches max_length"
    }


def test_masked_examples_are_counted_in_the_data_report(tmp_path, tiny_model):
    records = [{"instruction": "word " * 200, "input": "", "output": "the answer"}]
    records += [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(7)]
    path = tmp_path / "instructions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    streams = [{"kind": "instructions", "lang": "en", "path": str(path)}]
    datamodule = module(
        tmp_path, tiny_model, streams, max_length=64, overflow="mask", val_file=str(path)
    )
    datamodule.setup("validate")
    assert datamodule.check_lengths()[0]["dropped"] == {MASKED: 1}  # kept, but no loss
    for batch in datamodule.train_dataloader():  # one epoch, as a training run consumes it
        datamodule.on_before_batch_transfer(batch, 0)
    report = datamodule.data_report()
    assert report["training"] == {"encoded": 8, "truncated": 1, "masked": 1, "dropped": {}}
    assert report["validation"]["masked"] == 1 and report["validation"]["encoded"] == 8
    assert report["streams"][0]["held_out"] == 0  # a val_file replaces the held-out examples


def test_paper_holds_nothing_out_and_loads_the_slow_tokenizer(tmp_path, tiny_model):
    streams = [{"kind": "parallel", "lang": "zh", "path": parallel(tmp_path, "zh")}]
    paper = module(tmp_path, tiny_model, streams, paper=True)
    default = module(tmp_path, tiny_model, streams)
    for datamodule in (paper, default):
        datamodule.setup("validate")
    usable = LINES - 1
    assert paper.readers[0].size == usable and paper.val_set == []
    assert default.readers[0].size == usable - usable // 10  # the default's held-out tenth
    assert paper.tokenizer.is_fast is False and default.tokenizer.is_fast is True
    assert (
        module(tmp_path, tiny_model, streams, use_fast_tokenizer=False).tokenizer.is_fast is False
    )
    plan = paper.data_plan()
    assert plan["paper"] is True and plan["val_examples_per_stream"] == 0
    assert (plan["overflow"], plan["template"], plan["translation_instructions"]) == (
        "mask",
        "alpaca_official",
        "official",
    )
    assert plan["strip_pairs"] is True and plan["use_fast_tokenizer"] is False
    assert paper.hparams.template == "alpaca_official"  # what the evaluations prompt in
    # a template given explicitly is kept (paper: true sets it only when unset)
    assert module(
        tmp_path, tiny_model, streams, paper=True, template="alpaca"
    ).hparams.template == ("alpaca")


@pytest.mark.parametrize(
    "setting, value, official",
    [
        ("val_examples_per_stream", 64, "0"),
        ("overflow", "truncate", "mask"),
        ("translation_instructions", "package", "official"),
        ("strip_pairs", False, "true"),
        ("use_fast_tokenizer", True, "false"),
    ],
)
def test_a_setting_that_contradicts_paper_is_refused_naming_both(
    tmp_path, tiny_model, setting, value, official
):
    streams = [{"kind": "parallel", "lang": "zh", "path": parallel(tmp_path, "zh")}]
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    with pytest.raises(ValueError) as refused:
        module(tmp_path, tiny_model, streams, paper=True, **{setting: value})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"MuITDataModule: paper: true sets {setting}: {official} (")
    assert f"but {setting} is {shown}" in message
    # the same value as paper: true sets is no contradiction
    agreeing = {"0": 0, "true": True, "false": False}.get(official, official)
    module(tmp_path, tiny_model, streams, paper=True, **{setting: agreeing})


def test_the_paper_overlay_stacks_on_a_7b_recipe(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = ["x-llama-7b.yaml", "x-llama-7b/zh.yaml", "paper.yaml"]
    args = [arg for name in stack for arg in ("--config", str(REPO / "configs" / name))]
    cli = XLlamaCLI(
        args=[
            *args,
            f"--model.init_args.model_name_or_path={tiny_model}",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.num_nodes=1",
            "--trainer.strategy=auto",
        ],
        run=False,
    )
    data = cli.datamodule
    assert isinstance(data, CoITDataModule)
    assert data.hparams.paper is True and data.hparams.val_examples_per_stream == 0
    assert data.rules.translation_instructions == "official" and data.rules.strip_pairs
    assert data.hparams.overflow == "mask" and data.hparams.template == "alpaca_official"
    assert data.hparams.use_fast_tokenizer is False
    assert cli.model.hparams.loss_normalisation == "micro_batch_mean"


def test_the_paper_overlay_sets_the_papers_fsdp_precision():
    from lightning_xllama.commands.fit import fit_config_parser

    stack = ["x-llama-7b.yaml", "x-llama-7b/zh.yaml", "paper.yaml"]
    args = [arg for name in stack for arg in ("--config", str(REPO / "configs" / name))]
    strategy = fit_config_parser().parse_args(args).trainer.strategy
    assert strategy.class_path.endswith("DecoderFSDPStrategy")
    assert (strategy.init_args.reduce_dtype, strategy.init_args.buffer_dtype) == ("bf16", "bf16")
    assert strategy.init_args.activation_checkpointing is False
    assert strategy.init_args.param_dtype == "bf16"
