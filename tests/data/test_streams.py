"""Training streams: readers and their index, filters that count, the replayable order, sharding,
mixing by weights, counts and allocation files, and resuming from a saved data position."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.data import MuITDataModule, Stream
from lightning_xllama.data.index import build_index, load_index
from lightning_xllama.data.kinds import JsonlInstructions
from lightning_xllama.data.sources import (
    AlignedText,
    DataFormatError,
    TsvPairs,
)
from lightning_xllama.data.streams import StreamReader
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.training.module import XLlamaModule


def write_pairs(prefix: Path, en: list[str], other: list[str], lang: str = "zh") -> Path:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.en").write_text("".join(line + "\n" for line in en), encoding="utf-8")
    Path(f"{prefix}.{lang}").write_text("".join(line + "\n" for line in other), encoding="utf-8")
    return prefix


# --- readers and their index --------------------------------------------------------------
def test_empty_sides_and_duplicates_are_counted_and_named_not_dropped_silently(tmp_path):
    prefix = write_pairs(
        tmp_path / "train", ["a", "", "b", "c", "a", "d"], ["甲", "乙", "丙", "", "甲", "丁"]
    )
    source = AlignedText(prefix, "zh")
    index = build_index(source, "parallel", "zh", dedupe=True)
    assert index.units == 6 and index.usable_units == 3  # a, b, d
    assert index.skipped == {"empty en side": 1, "empty zh side": 1, "duplicate": 1}
    assert index.skipped_at["empty en side"] == [f"{tmp_path}/train.en:2 / train.zh:2"]
    assert index.skipped_at["duplicate"] == [f"{tmp_path}/train.en:5 / train.zh:5"]
    assert build_index(source, "parallel", "zh", dedupe=False).usable_units == 4  # the repeat stays


def test_tsv_pairs_filter_by_score_and_name_bad_lines(tmp_path):
    wikimatrix = tmp_path / "WikiMatrix.en-zh.tsv"
    wikimatrix.write_text("1.20\thello\t你好\n1.01\tbad pair\t坏\n1.08\tthanks\t谢谢\n")
    source = TsvPairs(wikimatrix)
    index = build_index(source, "parallel", "zh", min_score=1.05)
    assert index.usable_units == 2 and index.skipped == {"score below 1.05": 1}
    assert index.skipped_at["score below 1.05"] == [f"{wikimatrix}:2"]
    assert [r[:2] for r in source.read((0,), 3)] == [
        ("hello", "你好"),
        ("bad pair", "坏"),
        ("thanks", "谢谢"),
    ]
    swapped = TsvPairs(wikimatrix, columns={"x": 1, "en": 2})  # columns by position
    assert swapped.read((0,), 1)[0][:2] == ("你好", "hello")

    wikimatrix.write_text("1.20\thello\t你好\n1.10\tno target\n")
    with pytest.raises(
        DataFormatError, match=r"en-zh\.tsv:2: expected 3 tab-separated columns, found 2"
    ):
        build_index(TsvPairs(wikimatrix), "parallel", "zh")
    wikimatrix.write_text("1.20\thello\t你好\nhigh\tthanks\t谢谢\n")
    with pytest.raises(
        DataFormatError, match=r"en-zh\.tsv:2: score column 0 is not a number: 'high'"
    ):
        build_index(TsvPairs(wikimatrix), "parallel", "zh")
    with pytest.raises(ValueError, match="min_score filters TSV pairs"):
        Stream("parallel", "zh", str(tmp_path / "train"), min_score=1.0)


@pytest.mark.parametrize(
    "files, message",
    [
        ({"c.en": b"a\nb\nc\n", "c.zh": "甲\n乙\n".encode()}, r"c\.en has 3 lines, .*c\.zh has 2"),
        ({"c.en": b"", "c.zh": b""}, "parallel files are empty"),
        (
            {"c.en": b"fine\nbad \xff byte\n", "c.zh": "好\n坏\n".encode()},
            r"c\.en:2: not valid UTF-8",
        ),
        (
            {"c.jsonl": b'{"instruction": "a", "output": "b"}\n{"instruction": "x"\n'},
            r"c\.jsonl:2: invalid JSON",
        ),
        (
            {"c.jsonl": b'{"instruction": "a", "output": "b"}\n{"instruction": "x"}\n'},
            r"c\.jsonl:2: missing field 'output'",
        ),
        (
            {"c.jsonl": b'{"instruction": "a", "output": 3}\n'},
            r"c\.jsonl:1: field 'output' must be a string, got int",
        ),
        ({"c.jsonl": b""}, r"c\.jsonl: empty file"),
    ],
)
def test_bad_training_files_fail_at_prepare_data_naming_file_and_line(
    tmp_path, tiny_model, files, message
):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    kind, path = ("instructions", "c.jsonl") if "c.jsonl" in files else ("parallel", "c")
    datamodule = MuITDataModule(
        [Stream(kind, "zh", str(tmp_path / path))], tokenizer=tiny_model, cache_dir=str(tmp_path)
    )
    with pytest.raises(DataFormatError, match=message):
        datamodule.prepare_data()  # the whole file is validated before training starts


def test_unknown_language_or_format_is_refused_when_configured(tmp_path):
    with pytest.raises(KeyError, match=r"unknown language code 'xx'.*known codes: .*zh"):
        Stream("parallel", "xx", str(tmp_path / "train"))
    with pytest.raises(ValueError, match=r"instructions cannot be read from format 'tsv'"):
        Stream("instructions", "zh", str(tmp_path / "alpaca.tsv"))
    with pytest.raises(ValueError, match="give a weight or a count, not both"):
        Stream("parallel", "zh", str(tmp_path / "train"), weight=1.0, count=5)


def test_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n')
    first = load_index(
        JsonlInstructions(path), "instructions", "en", cache_dir=str(tmp_path / "cache")
    )
    assert first.usable_units == 2 and first.skipped == {"blank line": 1}
    assert len(list((tmp_path / "cache" / "index").glob("*.npz"))) == 1
    path.write_text('{"instruction": "a", "output": "b"}\n')
    assert (
        load_index(
            JsonlInstructions(path), "instructions", "en", cache_dir=str(tmp_path / "cache")
        ).units
        == 1
    )


def test_hugging_face_data_set_from_local_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [
        {"id": i, "translation": {"en": f"sentence {i}", "zh": f"句子 {i}"}} for i in range(300)
    ]
    data = tmp_path / "opus.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    stream = Stream(
        "parallel",
        "zh",
        "json",
        format="hf",
        hf_data_files=[str(data)],
        columns={"en": "translation.en", "x": "translation.zh"},
    )
    source = stream.open(str(tmp_path / "cache"))
    index = stream.index(source, dedupe=False, cache_dir=str(tmp_path / "cache"))
    assert index.units == 300 and index.chunks == 2
    assert source.read(tuple(index.offsets[1]), 2) == [
        ("sentence 256", "句子 256"),
        ("sentence 257", "句子 257"),
    ]
    reader = StreamReader(stream, source, index, seed=0, shuffle_window=256)
    assert sorted(unit for unit, _, _ in reader.items(0, 0, 300)) == list(range(300))
    wrong = Stream(
        "parallel",
        "zh",
        "json",
        format="hf",
        hf_data_files=[str(data)],
        columns={"en": "en", "x": "zh"},
    )
    with pytest.raises(
        DataFormatError, match=r"no column\(s\) \['en', 'zh'\]; it has \['id', 'translation'\]"
    ):
        wrong.open(str(tmp_path / "cache")).scan().__next__()


# --- the replayable order -----------------------------------------------------------------
def test_stream_order_is_seeded_and_readable_from_any_position(tmp_path):
    prefix = write_pairs(
        tmp_path / "big", [f"e{i}" for i in range(1000)], [f"x{i}" for i in range(1000)]
    )
    stream = Stream("parallel", "zh", str(prefix), direction="both")
    source = AlignedText(prefix, "zh")
    index = build_index(source, "parallel", "zh")
    reader = StreamReader(stream, source, index, seed=3, shuffle_window=512)
    full = list(reader.items(0, 0, reader.size))
    assert reader.size == 2000 and Counter((u, w) for u, w, _ in full) == {
        (u, w): 1 for u in range(1000) for w in (0, 1)
    }
    assert [u for u, _, _ in full[:50]] != sorted(u for u, _, _ in full[:50])  # shuffled
    assert list(reader.items(0, 777, 1234)) == full[777:1234]  # any range, read on its own
    again = StreamReader(stream, source, index, seed=3, shuffle_window=512)
    assert list(again.items(0, 0, 100)) == full[:100]
    assert list(reader.items(1, 0, 100)) != full[:100]  # another epoch, another order
    second_pass = list(reader.items(0, 2000, 4000))  # oversampling: a second pass, reshuffled
    assert sorted(second_pass) == sorted(full) and second_pass != full
    example = reader.example(full[0])
    assert example.task == "translation" and ("Chinese" in example.instruction)


class CountingText(AlignedText):
    """An aligned corpus that remembers which chunks it was asked to read."""

    def __init__(self, prefix, lang):
        super().__init__(prefix, lang)
        self.reads: set = set()

    def read(self, offsets, count):
        self.reads.add(offsets)
        return super().read(offsets, count)


def test_shards_read_only_their_own_part_of_a_large_file(tmp_path):
    lines = 256 * 12
    prefix = write_pairs(
        tmp_path / "large", [f"e{i}" for i in range(lines)], [f"x{i}" for i in range(lines)]
    )
    stream = Stream("parallel", "zh", str(prefix))
    index = build_index(AlignedText(prefix, "zh"), "parallel", "zh")
    shards, seen = 4, []
    for shard in range(shards):
        source = CountingText(prefix, "zh")
        reader = StreamReader(stream, source, index, seed=0, shuffle_window=256)
        start, stop = shard * lines // shards, (shard + 1) * lines // shards
        seen += [unit for unit, _, _ in reader.items(0, start, stop)]
        assert len(source.reads) <= 4, f"shard {shard} read {len(source.reads)} of 12 chunks"
    assert sorted(seen) == list(range(lines))  # together: every line exactly once


# --- mixing in the DataModule ---------------------------------------------------------------
def muit(tiny_model, tiny_data, tmp_path, streams=None, **overrides):
    streams = streams or [
        Stream("instructions", "en", str(DataLayout(tiny_data).instructions("en")), weight=1.0),
        Stream(
            "instructions",
            "syn_far",
            str(DataLayout(tiny_data).instructions("syn_far")),
            weight=1.0,
        ),
        Stream(
            "parallel",
            "syn_far",
            str(DataLayout(tiny_data).parallel("syn_far")),
            "both",
            weight=2.0,
        ),
        Stream("parallel", "syn_near", str(DataLayout(tiny_data).parallel("syn_near")), weight=1.0),
    ]
    kwargs = {
        "tokenizer": tiny_model,
        "batch_size": 8,
        "seed": 5,
        "cache_dir": str(tmp_path / "cache"),
        **overrides,
    }
    datamodule = MuITDataModule(streams, **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def epoch_streams(datamodule, rank=0, world_size=1) -> Counter:
    dataset = datamodule.train_dataset(rank, world_size)
    return Counter(e["stream"] for batch in dataset.encoded_batches(0, 0) for e in batch)


def test_epoch_realises_the_planned_mixture_on_every_rank(tiny_model, tiny_data, tmp_path):
    datamodule = muit(tiny_model, tiny_data, tmp_path, stop="all_exhausted")
    sizes = [reader.size for reader in datamodule.readers]
    assert sizes == [108, 108, 360, 180]  # held out: 12, 12, 20 pairs (both ways: 40), 20
    assert datamodule.counts == [180, 180, 360, 180]  # the largest for its weight read once
    assert epoch_streams(datamodule) == dict(enumerate(datamodule.counts))
    ranks = [epoch_streams(datamodule, rank, 2) for rank in (0, 1)]
    assert ranks[0] + ranks[1] == dict(
        enumerate(datamodule.counts)
    )  # 900 divides evenly: nothing repeated
    assert sum(ranks[0].values()) == sum(ranks[1].values())
    lengths = [len(datamodule.train_dataset(rank, 2)) for rank in (0, 1)]
    assert lengths[0] == lengths[1] == 57  # 450 examples per rank in batches of 8


def test_counts_from_an_allocation_file_and_its_errors(tiny_model, tiny_data, tmp_path):
    allocation = tmp_path / "allocation.yaml"
    allocation.write_text(
        "# lightning_xllama allocation file\nkind: allocation\nbudget: 150\nstreams:\n"
        "- {kind: parallel, lang: syn_far, direction: en-syn_far, count: 100}\n"
        "- {kind: parallel, lang: syn_near, direction: en-syn_near, count: 50}\n"
    )
    streams = [
        Stream("instructions", "en", str(DataLayout(tiny_data).instructions("en"))),
        Stream("parallel", "syn_far", str(DataLayout(tiny_data).parallel("syn_far")), "both"),
        Stream("parallel", "syn_near", str(DataLayout(tiny_data).parallel("syn_near"))),
    ]
    datamodule = muit(tiny_model, tiny_data, tmp_path, streams, allocation=str(allocation))
    assert datamodule.counts == [
        108,
        200,
        50,
    ]  # all instructions once; pairs as allocated (both ways: 2 each)
    assert epoch_streams(datamodule) == {0: 108, 1: 200, 2: 50}
    assert datamodule.hparams.streams[1]["count"] == 100  # saved as plain values

    allocation.write_text(
        allocation.read_text().replace("syn_near, direction: en-syn_near", "zh, direction: en-zh")
    )
    with pytest.raises(
        ValueError, match=r"streams\[1\] \(parallel, zh, en-zh\) matches no stream; configured"
    ):
        MuITDataModule(streams, allocation=str(allocation))
    with pytest.raises(ValueError, match="already sets its count or weight"):
        MuITDataModule(
            [streams[0], Stream("parallel", "syn_far", streams[1].path, count=3)],
            allocation=str(allocation),
        )
    with pytest.raises(ValueError, match="have counts and .* weights"):
        MuITDataModule(
            [
                Stream("instructions", "en", streams[0].path, weight=1.0),
                Stream("parallel", "syn_far", streams[1].path, count=3),
            ]
        )


def test_same_seed_same_batches_other_seed_other_batches(tiny_model, tiny_data, tmp_path):
    first = muit(tiny_model, tiny_data, tmp_path).train_examples(24)
    assert first == muit(tiny_model, tiny_data, tmp_path).train_examples(24)
    assert first != muit(tiny_model, tiny_data, tmp_path, seed=6).train_examples(24)


# --- resuming -----------------------------------------------------------------------------
def consume(datamodule, count: int, prefetch: bool = True) -> list[dict]:
    """Take ``count`` batches as a training loop does: the loader is one batch ahead of the step."""
    taken = []
    while len(taken) < count:
        iterator = iter(datamodule.train_dataloader())
        pending = next(iterator, None)
        while pending is not None and len(taken) < count:
            following = next(iterator, None) if prefetch else None
            taken.append(datamodule.on_before_batch_transfer(pending, 0))
            pending = following if prefetch else next(iterator, None)
    return taken


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys()
        and all(
            torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k] for k in x
        )
        for x, y in zip(a, b)
    )


@pytest.mark.parametrize("batching, workers", [("pad", 2), ("group_by_length", 0), ("pack", 0)])
def test_resuming_from_the_saved_position_gives_the_same_next_batches(
    tiny_model, tiny_data, tmp_path, caplog, batching, workers
):
    settings = dict(batching=batching, num_workers=workers, group_batches=4, stop="first_exhausted")
    reference = muit(tiny_model, tiny_data, tmp_path, **settings)
    per_epoch = len(reference.train_dataloader())
    stop_at = per_epoch - 3  # resume near the end of epoch 0, run into epoch 1
    uninterrupted = consume(reference, per_epoch + 5)
    assert reference.position.epoch == 1 and reference.position.batches == 5

    interrupted = muit(tiny_model, tiny_data, tmp_path, **settings)
    assert same_batches(consume(interrupted, stop_at), uninterrupted[:stop_at])
    state = interrupted.state_dict()
    assert (state["epoch"], state["batches"]) == (
        0,
        stop_at,
    )  # the consumed batch, not the prefetched one

    resumed = muit(tiny_model, tiny_data, tmp_path, **settings)
    resumed.load_state_dict(
        json.loads(json.dumps(state))
    )  # plain values, as a checkpoint holds them
    assert same_batches(consume(resumed, per_epoch + 5 - stop_at), uninterrupted[stop_at:])
    assert not same_batches(uninterrupted[:5], uninterrupted[per_epoch:])  # epoch 1 is reshuffled

    other = muit(tiny_model, tiny_data, tmp_path, **{**settings, "batch_size": 4})  # another plan
    with caplog.at_level("WARNING", logger="lightning_xllama.data.datamodule"):
        other.load_state_dict(state)
    assert "'batch_size': (8, 4)" in caplog.text and "continues after the same share" in caplog.text
    assert other.position.batches == stop_at * len(other.train_dataloader()) // per_epoch


def test_worker_processes_yield_the_in_process_order(tiny_model, tiny_data, tmp_path):
    datamodule = muit(tiny_model, tiny_data, tmp_path, num_workers=3, batch_size=16)
    dataset = datamodule.train_dataset()
    expected = [dataset.collated(batch) for batch in dataset.encoded_batches(0, 0)]
    assert same_batches(list(datamodule.train_dataloader()), expected)
    assert np.all(dataset.dealt.sum(axis=0) == dataset.shard_examples)


class BatchRecorder(L.Callback):
    def __init__(self):
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch["input_ids"].clone())


def test_fit_resumed_from_a_mid_epoch_checkpoint_trains_on_the_same_next_batches(
    tiny_model, tiny_data, tmp_path
):
    def run(max_steps: int, ckpt_path=None):
        recorder = BatchRecorder()
        checkpoints = ModelCheckpoint(
            tmp_path / "checkpoints", every_n_train_steps=2, save_top_k=-1
        )
        trainer = quiet_trainer(
            max_steps=max_steps, callbacks=[recorder, checkpoints], enable_checkpointing=True
        )
        datamodule = tiny_datamodule(
            tiny_model, tiny_data, batch_size=4, num_workers=1, cache_dir=str(tmp_path / "cache")
        )
        trainer.fit(XLlamaModule(tiny_model), datamodule=datamodule, ckpt_path=ckpt_path)
        return recorder.batches

    uninterrupted = run(5)
    (checkpoint,) = (tmp_path / "checkpoints").glob("*step=2.ckpt")  # written after the second step
    assert (
        torch.load(checkpoint, weights_only=True)["CoITDataModule"]["batches"] == 2
    )  # not the prefetched 3
    resumed = run(5, checkpoint)
    assert len(resumed) == 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted[2:]))


def test_a_muit_config_builds_with_typed_streams_and_names_a_bad_key(
    tiny_model, tiny_data, tmp_path, capsys
):
    from lightning_xllama.commands.data_stats import load_datamodule

    section = yaml.safe_load(f"""
class_path: lightning_xllama.data.MuITDataModule
init_args:
  streams:
    - {{kind: instructions, lang: en, path: {DataLayout(tiny_data).instructions("en")}, weight: 1}}
    - {{kind: parallel, lang: syn_far, path: {DataLayout(tiny_data).parallel("syn_far")}, direction: both, weight: 2}}
    - {{kind: parallel, lang: syn_near, path: {DataLayout(tiny_data).parallel("syn_near")}, weight: 1}}
  stop: all_exhausted
  batching: group_by_length
  cache_dir: {tmp_path}
""")
    datamodule = load_datamodule(section, {"init_args": {"model_name_or_path": tiny_model}})
    assert isinstance(datamodule, MuITDataModule) and datamodule.streams[1].direction == "both"
    assert (
        datamodule.hparams.streams[2]["lang"] == "syn_near"
        and datamodule.hparams.tokenizer == tiny_model
    )
    section["init_args"]["streams"][0]["wieght"] = 1
    with pytest.raises(SystemExit):  # as the CLI reports a bad config: the key named, exit code 2
        load_datamodule(section)
    assert "wieght" in capsys.readouterr().err


def test_overlong_examples_dropped_in_the_pipeline_are_counted_and_steps_stay_planned(
    tiny_model, tiny_data, tmp_path
):
    datamodule = muit(tiny_model, tiny_data, tmp_path, max_length=80, overflow="drop", batch_size=4)
    loader = datamodule.train_dataloader()
    batches = [datamodule.on_before_batch_transfer(batch, 0) for batch in loader]
    assert len(batches) == len(loader)  # dropping shrinks batches, never the number of steps
    report = datamodule.train_report
    assert report.encoded + sum(report.dropped.values()) == sum(datamodule.counts)
    assert (
        report.dropped["longer than max_length"] > 0
        and report.encoded > 0
        and report.truncated == 0
    )
    assert max(batch["input_ids"].shape[1] for batch in batches) <= 80
    assert datamodule.val_report.dropped["longer than max_length"] > 0  # validation counts its own
