"""Packing: several examples a row without attention across their borders, the loss unchanged;
packing a buffer of micro-batches fills rows without changing the epoch's examples, the steps
per epoch, the resume position or the order for a seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from training_utils import tiny_datamodule
from transformers import AutoModelForCausalLM

from lightning_xllama.data import MuITDataModule, Stream
from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.encoding import encode_examples
from lightning_xllama.data.loader import DataPosition, cut_buffer
from lightning_xllama.data.packing import (
    PackCollator,
    _cut_runs,
    additive_mask,
    block_causal_mask,
    pack_buffer,
    pack_rows,
)
from lightning_xllama.data.sources import Example
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.training.module import XLlamaModule

EXAMPLES = [
    Example("what is the subject of this sentence?", "the dog sees a cat.", "the dog"),
    Example(
        "rewrite this sentence with subject and object swapped.",
        "a king holds the cup.",
        "the cup holds a king.",
    ),
    Example(
        "how many words are in this sentence?", "the girl paints a red boat near the river.", "nine"
    ),
    Example(
        "Translate this text from English into Farish.",
        "the boy follows a bird.",
        "лебу борор кен фен.",
    ),
]

# three hand-made examples: 3, 2 and 4 tokens; -100 marks prompt tokens
HAND = [
    {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]},
    {"input_ids": [21, 22], "labels": [21, 22]},
    {"input_ids": [31, 32, 33, 34], "labels": [-100, -100, 33, 34]},
]


def old_block_causal_mask(rows: list[list[int]], width: int) -> torch.Tensor:
    """The collator's former dense mask, from the examples' lengths in each row: a token attends
    to the earlier tokens of its own example, a padding token to itself only."""
    mask = torch.zeros(len(rows), 1, width, width, dtype=torch.bool)
    for r, lengths in enumerate(rows):
        at = 0
        for n in lengths:
            mask[r, 0, at : at + n, at : at + n] = torch.ones(n, n, dtype=torch.bool).tril()
            at += n
        mask[r, 0, range(at, width), range(at, width)] = True
    return mask


def fake(lengths: list[int]) -> list[dict]:
    return [{"input_ids": [7] * n, "labels": [7] * n} for n in lengths]


# --- the collator's contract ------------------------------------------------------------------
def test_rows_are_filled_first_fit_by_decreasing_length():
    assert pack_rows([5, 3, 4], None) == [[0, 1, 2]]
    rows = pack_rows([300, 200, 400, 100, 50], 512)
    assert rows == [[2, 3], [0, 1], [4]]
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]


def test_one_row_holds_the_examples_in_order_with_their_segments():
    batch = PackCollator(pad_token_id=0)(HAND)
    assert set(batch) == {
        "input_ids",
        "labels",
        "position_ids",
        "cu_seq_lens",
        "max_seq_len",
        "loss_positions",
    }  # no mask
    assert batch["loss_positions"].tolist() == [
        0,
        1,
        3,
        6,
        7,
    ]  # positions whose next label is trained on
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22, 31, 32, 33, 34]]
    assert batch["labels"].tolist() == [
        [-100, 12, 13, -100, 22, -100, -100, 33, 34]
    ]  # each first token -100
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert (
        batch["cu_seq_lens"].tolist() == [0, 3, 5, 9] and batch["cu_seq_lens"].dtype == torch.int32
    )
    assert batch["max_seq_len"] == 4 and type(batch["max_seq_len"]) is int
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key].dtype == torch.int64


def test_padding_tail_is_one_more_segment_counting_from_zero():
    batch = PackCollator(pad_token_id=0, pad_to_multiple_of=4)(HAND)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22, 31, 32, 33, 34, 0, 0, 0]]
    assert batch["labels"].tolist() == [
        [-100, 12, 13, -100, 22, -100, -100, 33, 34, -100, -100, -100]
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 1, 2]]
    assert batch["cu_seq_lens"].tolist() == [0, 3, 5, 9, 12] and batch["max_seq_len"] == 4


def test_rows_of_at_most_pack_length_and_the_loaders_row_marks():
    batch = PackCollator(pad_token_id=0, pack_length=5)(HAND)  # 9 tokens: two rows of 5 and 4
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22], [31, 32, 33, 34, 0]]
    assert batch["labels"].tolist() == [[-100, 12, 13, -100, 22], [-100, -100, 33, 34, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch["cu_seq_lens"].tolist() == [0, 3, 5, 9, 10] and batch["max_seq_len"] == 4

    marked = [
        {**HAND[0], "row": 1},
        {**HAND[1], "row": 0},
        {**HAND[2], "row": 1},
    ]  # rows in order of first mark
    batch = PackCollator(pad_token_id=0)(marked)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 31, 32, 33, 34], [21, 22, 0, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 3, 4]]
    assert batch["cu_seq_lens"].tolist() == [0, 3, 7, 9, 14]
    assert batch["max_seq_len"] == 5  # the padding tail is the longest segment here
    with pytest.raises(ValueError, match="longer than pack_length"):
        PackCollator(pad_token_id=0, pack_length=6)(marked)


def test_mask_from_position_ids_equals_the_former_mask():
    batch = PackCollator(pad_token_id=0, pack_length=5)(HAND)
    mask = block_causal_mask(batch["position_ids"])
    assert mask.shape == (2, 1, 5, 5) and mask.dtype == torch.bool
    assert torch.equal(
        mask, old_block_causal_mask([[3, 2], [4]], 5) | padding_tail([[3, 2], [4]], 5)
    )

    rng = np.random.default_rng(0)
    for _ in range(
        5
    ):  # random rows, padded: equal on every real token's row; the padding sees its tail only
        lengths = rng.integers(1, 40, size=int(rng.integers(2, 30))).tolist()
        examples = fake(lengths)
        collator = PackCollator(pad_token_id=0, pack_length=64, pad_to_multiple_of=8)
        batch = collator(examples)
        rows = [[lengths[i] for i in row] for row in collator.rows(examples)]
        width = batch["input_ids"].shape[1]
        new, old = block_causal_mask(batch["position_ids"]), old_block_causal_mask(rows, width)
        padding = torch.tensor([[at >= sum(row) for at in range(width)] for row in rows])[
            :, None, :, None
        ]
        assert torch.equal(new & ~padding, old & ~padding)
        assert torch.equal(new & padding, padding_tail(rows, width))
        assert new.any(dim=-1).all()  # no empty attention row
        assert batch["cu_seq_lens"][-1] == batch["input_ids"].numel()
        assert batch["max_seq_len"] == int(batch["cu_seq_lens"].diff().max())


def padding_tail(rows: list[list[int]], width: int) -> torch.Tensor:
    """Causal attention within each row's padding tail."""
    mask = torch.zeros(len(rows), 1, width, width, dtype=torch.bool)
    for r, lengths in enumerate(rows):
        at = sum(lengths)
        mask[r, 0, at:, at:] = torch.ones(width - at, width - at, dtype=torch.bool).tril()
    return mask


def test_additive_mask_is_zero_where_attended_and_the_minimum_elsewhere():
    mask = block_causal_mask(torch.tensor([[0, 1, 0, 1]]))
    additive = additive_mask(mask, torch.float32)
    assert additive.dtype == torch.float32
    assert (
        torch.equal(additive == 0, mask)
        and (additive[~mask] == torch.finfo(torch.float32).min).all()
    )


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_logits_and_loss_equal_unpacked_ones(tiny_model, attn_implementation):
    tokenizer = load_tokenizer(tiny_model)
    examples = encode_examples(tokenizer, EXAMPLES, max_length=512)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model, attn_implementation=attn_implementation
    ).eval()
    batch = PackCollator(tokenizer.pad_token_id)(examples)  # one row, the four examples in order
    assert batch["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert (
        batch["cu_seq_lens"].tolist()
        == np.cumsum([0] + [len(e["input_ids"]) for e in examples]).tolist()
    )
    mask = block_causal_mask(batch["position_ids"])  # what the model builds for sdpa and eager
    if attn_implementation == "eager":
        mask = additive_mask(mask, torch.float32)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=mask
        ).logits[0]
        leaky = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=torch.ones_like(batch["input_ids"]),
        ).logits[0]
        at = 0
        for example in examples:
            n = len(example["input_ids"])
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[at : at + n], alone, atol=1e-5, rtol=1e-4)
            at += n
        # the test can tell: with a 2D mask of ones the later examples see the earlier ones
        assert not torch.allclose(leaky[at - n : at], alone, atol=1e-3)

    module = XLlamaModule(tiny_model, attn_implementation=attn_implementation)
    module.configure_model()
    with torch.no_grad():
        padded_loss, padded_tokens = module.response_loss(
            PadCollator(tokenizer.pad_token_id)(examples)
        )
        rows = PackCollator(tokenizer.pad_token_id, pack_length=100)(
            examples
        )  # several rows, padded
        assert rows["input_ids"].shape[0] > 1 and (rows["labels"] == -100).any()
        packed_loss, packed_tokens = module.response_loss(rows)
    assert packed_tokens == padded_tokens
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-4, rtol=1e-5)


def test_packed_training_batches_hold_the_same_examples_and_loss_as_padded_ones(
    tiny_model, tiny_data, tmp_path
):
    padded = tiny_datamodule(tiny_model, tiny_data, batch_size=6, cache_dir=str(tmp_path))
    packed = tiny_datamodule(
        tiny_model, tiny_data, batch_size=6, cache_dir=str(tmp_path), batching="pack"
    )
    for datamodule in (padded, packed):
        datamodule.setup("fit")
    module = XLlamaModule(tiny_model)
    module.configure_model()
    for pad_batch, pack_batch, _ in zip(
        padded.train_dataloader(), packed.train_dataloader(), range(3)
    ):
        assert pack_batch["input_ids"].shape[0] == 1  # the whole micro-batch in one row
        assert "attention_mask" not in pack_batch
        assert (
            int(pad_batch["attention_mask"].sum()) == pack_batch["input_ids"].shape[1]
        )  # no padding left
        lengths = pad_batch["attention_mask"].sum(dim=1).tolist()
        assert (
            pack_batch["cu_seq_lens"].tolist() == np.cumsum([0] + lengths).tolist()
        )  # one segment an example
        assert pack_batch["max_seq_len"] == max(lengths)
        with torch.no_grad():
            pad_loss, pad_tokens = module.response_loss(pad_batch)
            pack_loss, pack_tokens = module.response_loss(pack_batch)
        assert pad_tokens == pack_tokens
        torch.testing.assert_close(pack_loss, pad_loss, atol=1e-4, rtol=1e-5)


# --- packing a buffer of micro-batches ------------------------------------------------------
def lengths_mix(count: int, seed: int = 0) -> list[int]:
    """Translation pairs (log-normal, ~100 tokens) with a twentieth of long-tailed instructions
    cut at 512, like the data pipeline benchmark's mixture."""
    rng = np.random.default_rng(seed)
    pairs = np.exp(rng.normal(2.5, 0.5, count)) * 4.4 + 40
    instructions = np.exp(rng.normal(3.6, 0.9, count)) * 2.2 + 50
    mixed = np.where(rng.random(count) < 1 / 21, instructions, pairs)
    return np.clip(mixed, 8, 512).astype(int).tolist()


def test_a_buffer_packs_into_micro_batches_of_about_equal_tokens_and_rows():
    lengths = lengths_mix(64 * 8)
    plan = pack_buffer(lengths, 64, 512)
    assert len(plan) == 64
    assert sorted(i for rows in plan for row in rows for i in row) == list(
        range(len(lengths))
    )  # each once
    loads = [[sum(lengths[i] for i in row) for row in rows] for rows in plan]
    assert max(max(batch) for batch in loads) <= 512
    tokens = [sum(batch) for batch in loads]
    cells = [len(batch) * max(batch) for batch in loads]  # the micro-batch's tensor
    assert max(cells) < 1.15 * np.mean(tokens) and min(tokens) > 0.85 * np.mean(tokens)
    assert max(len(rows) for rows in plan) - min(len(rows) for rows in plan) <= 1
    assert sum(tokens) / sum(cells) > 0.99
    assert all(row == sorted(row) for rows in plan for row in rows)
    assert plan == pack_buffer(lengths, 64, 512)  # deterministic
    wide = pack_buffer(lengths, 64, 512 * 16)  # rows that hold a micro-batch's share: one row each
    assert (
        all(len(rows) == 1 for rows in wide) and max(len(row) for rows in wide for row in rows) > 1
    )

    assert pack_buffer([5, 3], 4, 8) == [[[0]], [[1]], [], []]  # fewer examples than micro-batches
    assert pack_buffer([], 2, 8) == [[], []]
    assert pack_buffer([5, 3, 4], 1, None) == [[[0, 1, 2]]]
    assert pack_buffer([400, 400, 400], 1, 512) == [[[0], [1], [2]]]
    with pytest.raises(ValueError, match="does not fit"):
        pack_buffer([600], 1, 512)


def test_runs_of_rows_make_the_largest_micro_batch_tensor_as_small_as_it_can_be():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 11))
        groups = int(rng.integers(1, n + 1))
        loads = sorted(rng.integers(1, 50, size=n).tolist(), reverse=True)
        sizes = _cut_runs(loads, groups)
        assert len(sizes) == groups and sum(sizes) == n and min(sizes) >= 1
        starts = np.cumsum([0] + sizes[:-1])
        best = min(  # every way to cut n rows into that many runs
            max(size * loads[start] for size, start in zip(cut, np.cumsum((0,) + cut[:-1])))
            for cut in compositions(n, groups)
        )
        assert max(size * loads[start] for size, start in zip(sizes, starts)) == best


def compositions(n: int, parts: int):
    if parts == 1:
        yield (n,)
        return
    for first in range(1, n - parts + 2):
        for rest in compositions(n - first, parts - 1):
            yield (first,) + rest


def test_buffer_packing_fills_rows_at_95_percent_where_one_micro_batch_at_a_time_does_not():
    lengths, batch_size, group = lengths_mix(64 * 8 * 8, seed=1), 8, 64

    def fill(batches: list[list[dict]]) -> float:
        collator = PackCollator(pad_token_id=0, pack_length=512)
        tensors = [collator(batch) for batch in batches]
        return sum(len(e["input_ids"]) for b in batches for e in b) / sum(
            t["input_ids"].numel() for t in tensors
        )

    buffers = []
    for start in range(0, len(lengths), group * batch_size):
        buffers += cut_buffer(
            fake(lengths[start : start + group * batch_size]),
            batch_size,
            "pack",
            512,
            np.random.default_rng(start),
        )
    assert len(buffers) == len(lengths) // batch_size
    assert fill(buffers) >= 0.95
    cells = 0
    for i in range(0, len(lengths), batch_size):  # first-fit per micro-batch, as before
        batch = lengths[i : i + batch_size]
        rows = pack_rows(batch, 512)
        cells += len(rows) * max(sum(batch[j] for j in row) for row in rows)
    assert sum(lengths) / cells < 0.9


def muit(tiny_model, tiny_data, tmp_path, **overrides) -> MuITDataModule:
    streams = [
        Stream("instructions", "en", str(DataLayout(tiny_data).instructions("en")), weight=1.0),
        Stream(
            "parallel",
            "syn_far",
            str(DataLayout(tiny_data).parallel("syn_far")),
            "both",
            weight=2.0,
        ),
        Stream("parallel", "syn_near", str(DataLayout(tiny_data).parallel("syn_near")), weight=1.0),
    ]
    kwargs = dict(
        tokenizer=tiny_model,
        batch_size=7,
        seed=5,
        cache_dir=str(tmp_path / "cache"),
        stop="all_exhausted",
        batching="pack",
        max_length=256,
        pack_length=256,
        group_batches=4,
    )
    datamodule = MuITDataModule(streams, **{**kwargs, **overrides})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def key(example: dict) -> tuple:
    return example["stream"], tuple(example["input_ids"])


def test_every_worker_of_every_rank_yields_the_planned_batches_and_the_epoch_keeps_its_examples(
    tiny_model, tiny_data, tmp_path
):
    packed = muit(tiny_model, tiny_data, tmp_path, num_workers=3)
    padded = muit(tiny_model, tiny_data, tmp_path, num_workers=3, batching="pad")
    world_size = 2
    for rank in range(world_size):
        dataset = packed.train_dataset(rank, world_size)
        assert (
            dataset.shard_examples % (dataset.batch_size * dataset.group_batches) != 0
        )  # a partial last buffer
        for logical in range(dataset.workers):
            assert (
                sum(1 for _ in dataset._encoded_batches(logical, 0, 0)) == dataset.worker_batches
            )  # lockstep
        batches = list(dataset.encoded_batches(0, 0))
        assert len(batches) == len(dataset) == len(padded.train_dataset(rank, world_size))
        sizes = Counter(len(b) for b in batches)
        assert len(sizes) > 1  # micro-batches of varying numbers of examples
        examples = Counter(key(e) for b in batches for e in b)
        same = Counter(
            key(e) for b in padded.train_dataset(rank, world_size).encoded_batches(0, 0) for e in b
        )
        assert examples == same  # the same examples, each as often: only their grouping changed
        for batch in batches:  # rows as marked, within pack_length
            tensors = dataset.collated(batch)
            assert tensors["input_ids"].shape[1] <= 256
            assert tensors["report"]["examples"] == len(batch)
            assert tensors["cu_seq_lens"][-1] == tensors["input_ids"].numel()


def test_resuming_inside_a_packed_buffer_gives_the_same_remaining_batches(
    tiny_model, tiny_data, tmp_path
):
    datamodule = muit(tiny_model, tiny_data, tmp_path, num_workers=2)
    dataset = datamodule.train_dataset()
    whole = [[key(e) + (e["row"],) for e in b] for b in dataset.encoded_batches(0, 0)]
    for start in (
        1,
        3,
        4,
        9,
        13,
        len(whole) - 1,
    ):  # inside and at the borders of buffers of 4 a worker
        assert [
            [key(e) + (e["row"],) for e in b] for b in dataset.encoded_batches(0, start)
        ] == whole[start:]
    assert whole == [
        [key(e) + (e["row"],) for e in b]
        for b in muit(tiny_model, tiny_data, tmp_path, num_workers=2)
        .train_dataset()
        .encoded_batches(0, 0)
    ]  # the seed decides
    other = muit(tiny_model, tiny_data, tmp_path, num_workers=2, seed=6).train_dataset()
    assert whole != [[key(e) + (e["row"],) for e in b] for b in other.encoded_batches(0, 0)]

    expected = [dataset.collated(batch) for batch in dataset.encoded_batches(0, 0)]
    datamodule.position = DataPosition(0, 7)  # through the loader's worker processes
    loader = list(datamodule.train_dataloader())
    assert len(loader) == len(expected) - 7
    for got, want in zip(loader, expected[7:]):
        assert got.keys() == want.keys()
        assert all(
            torch.equal(got[k], want[k]) if isinstance(got[k], torch.Tensor) else got[k] == want[k]
            for k in got
        )
