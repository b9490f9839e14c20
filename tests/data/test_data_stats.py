"""``data stats --config``: the numbers a user checks before training, on the demo's config."""

from __future__ import annotations

import json

import yaml
from conftest import REPO, run_cli

from lightning_xllama.demo.layout import DataLayout


def test_data_stats_reports_streams_filters_padding_overlap_and_masks(demo_root, tmp_path):
    data = demo_root / "artifacts" / "demo" / "data"
    train, test = DataLayout(data).parallel("syn_far"), DataLayout(data).translation_test("syn_far")
    # a corpus with three test pairs leaked into it, one repeated pair and one empty line
    en = train.with_suffix(".en").read_text().splitlines()
    far = train.with_suffix(".syn_far").read_text().splitlines()
    test_en, test_far = (
        test.with_suffix(".en").read_text().splitlines(),
        test.with_suffix(".syn_far").read_text().splitlines(),
    )
    leaked = tmp_path / "leaked"
    leaked.with_suffix(".en").write_text("\n".join(en + test_en[:3] + [en[0], ""]) + "\n")
    leaked.with_suffix(".syn_far").write_text(
        "\n".join(far + test_far[:3] + [far[0], far[1]]) + "\n"
    )
    config = yaml.safe_load((demo_root / "configs" / "demo.yaml").read_text())
    config["data"]["init_args"].update(
        parallel=str(leaked), dedupe=True, cache_dir=str(tmp_path / "cache"), batching="pack"
    )
    (tmp_path / "leaked.yaml").write_text(yaml.safe_dump(config))

    out = tmp_path / "stats.json"
    result = run_cli(
        [
            "data",
            "stats",
            "--config",
            str(tmp_path / "leaked.yaml"),
            "--limit_batches",
            "6",
            "--out",
            str(out),
        ],
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    streams = {s["stream"]: s for s in report["streams"]}
    assert list(streams) == ["english", "translated", "parallel"]
    weights = config["data"]["init_args"]["weights"]
    for name, stream in streams.items():
        assert abs(stream["planned_share"] - weights[name] / sum(weights.values())) < 0.01
        assert stream["examples"] > 0 and stream["prompt_tokens"] > stream["response_tokens"] > 0
    assert (
        sum(s["examples"] for s in streams.values())
        == 6 * config["data"]["init_args"]["batch_size"]
    )
    assert streams["parallel"]["skipped"] == {"empty en side": 1, "duplicate": 1}
    assert streams["parallel"]["units"] == len(en) + 5
    assert report["padding_efficiency"]["pack"] == 1.0 > report["padding_efficiency"]["pad"]
    (overlap,) = report["overlap"].values()
    assert overlap["in_training"] == 6 and overlap["sentences"] == 2 * len(
        test_en
    )  # both sides of 3 pairs
    assert (
        "1 skipped: duplicate (e.g." in result.stdout
        and "1 skipped: empty en side" in result.stdout
    )
    assert "6 of 400 sentences appear in training pairs" in result.stdout
    assert (
        "loss mask (" in result.stdout and "⟦" in result.stdout and "### Response:" in result.stdout
    )
    assert "first packed batch" in result.stdout


def test_data_stats_parses_a_fit_config_with_fit_s_links_and_no_cli_internals():
    """``data stats`` reads a ``fit`` config through a parser of its own built from public API
    with ``fit``'s link function (the tokenizer follows the model), not a LightningCLI subclass."""
    from lightning.pytorch.cli import LightningCLI

    from lightning_xllama.commands import data_stats
    from lightning_xllama.commands.fit import link_arguments  # noqa: F401  the shared links

    demo = REPO / "configs" / "demo.yaml"
    config = data_stats.stats_parser().parse_args(
        ["--config", str(demo), "--model.init_args.model_name_or_path", "elsewhere/model"]
    )
    assert config.data.init_args.tokenizer == "elsewhere/model"
    assert config.data.init_args.language == "syn_far" and config.limit_batches is None
    assert config.trainer.callbacks[0].class_path.endswith("TranslationEvaluation")
    assert not [
        name
        for name, value in vars(data_stats).items()
        if isinstance(value, type) and issubclass(value, LightningCLI)
    ]
