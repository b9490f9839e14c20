"""Batched greedy (or beam) generation, the way a 7B model needs it.

Prompts are sorted by length so each batch pads little, left-padded so every row ends at the
same position, decoded with the KV cache until EOS or ``max_new_tokens``, and returned in input
order. A base model that babbles (repeats itself up to the limit) makes every prompt cost
``max_new_tokens``; two optional stop rules end such a row early, each row on its own
(:class:`RowStops`): ``stop_at_newline`` for single-line tasks, and a repetition guard
(``repeat_ngram``, ``repeat_times``). How many rows each rule ended is counted. Under DDP/FSDP each rank generates a contiguous share and the results are gathered once;
every rank runs the same number of batches (and ``synced_gpus`` keeps sharded models in step),
since a rank that skips a forward hangs the others.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from transformers import StoppingCriteria

from lightning_xllama.prompts import chat_end_of_turn
from lightning_xllama.runtime import distributed


def stop_token_ids(model, tokenizer) -> list[int]:
    """Ids that end a response: the tokenizer's EOS, the model's generation-config EOS ids
    (LLaMA-3.1 lists several) and the end-of-turn tokens of the tokenizer's chat template, which
    a model tuned in that template ends its answers with (:func:`chat_end_of_turn`)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [tokenizer.eos_token_id]
    ids += configured if isinstance(configured, (list, tuple)) else [configured]
    ids += chat_end_of_turn(tokenizer)
    return list(dict.fromkeys(i for i in ids if i is not None))


STOP_COUNTS = ("stopped_newline", "stopped_repeating", "hit_limit")
"""Keys of the counts :func:`generate` fills: rows ended by ``stop_at_newline``, by the
repetition guard, and rows that ran to ``max_new_tokens`` without EOS or a stop rule."""

BatchHook = Callable[[list[int], list[str], dict[str, int]], None]
"""Called after each batch of real prompts with their indices in the prompt list, their outputs
and the batch's :data:`STOP_COUNTS`: progress and outputs written as they come."""


def check_stop_rules(
    repeat_ngram: int, repeat_times: int, num_beams: int = 1, stop_at_newline: bool = False
) -> None:
    """Refuse stop-rule settings that cannot work, naming them: counts below 0, one of the pair
    without the other, a guard that would end a row at its first n-gram, or beam search (beams of
    one prompt are not rows that end on their own)."""
    for name, value in (("repeat_ngram", repeat_ngram), ("repeat_times", repeat_times)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0 (0: off), got {value!r}")
    if (repeat_ngram == 0) != (repeat_times == 0):
        raise ValueError(
            "the repetition guard needs both repeat_ngram (n-gram length) and repeat_times (how "
            f"many occurrences end a row), or neither; got repeat_ngram={repeat_ngram}, "
            f"repeat_times={repeat_times}"
        )
    if repeat_times == 1:
        raise ValueError("repeat_times must be at least 2: one occurrence is not a repetition")
    if (repeat_ngram or stop_at_newline) and num_beams != 1:
        raise ValueError(
            f"stop_at_newline and the repetition guard need num_beams 1 (greedy), got {num_beams}"
        )


def newline_tables(tokenizer, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per token id (``size`` ids): whether its text holds a newline, whether it holds visible
    text, and whether it holds visible text before its first newline. Special tokens hold no
    text; ids beyond the tokenizer hold nothing."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
    texts = texts[:size] + [""] * (size - len(texts))
    newline = torch.tensor(["\n" in text for text in texts], dtype=torch.bool)
    visible = torch.tensor([bool(text.strip()) for text in texts], dtype=torch.bool)
    leading = torch.tensor([bool(text.split("\n", 1)[0].strip()) for text in texts])
    return newline, visible, leading


class RowStops(StoppingCriteria):
    """Stop rules that end each row of a batch on its own, computed on the device for the whole
    batch at each step (transformers ends a row when any criterion says so, and the batch when
    all rows have ended).

    - newline: the row's latest token holds a newline after visible text (a newline before any
      text, e.g. right after the prompt, does not end it);
    - repetition: the row's latest ``repeat_ngram`` tokens occur ``repeat_times`` times among its
      generated tokens (a loop of any period up to that length ends after ``repeat_times`` turns).

    ``reason`` keeps why each row ended: 0 still running or ended by EOS (rows that ended on a
    stop token are left alone afterwards: their padding is not text), 1 newline, 2 repetition.
    """

    NEWLINE, REPEATING = 1, 2

    def __init__(
        self,
        prompt_width: int,
        stop_ids: list[int],
        newline: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
        repeat_ngram: int = 0,
        repeat_times: int = 0,
    ):
        self.prompt_width = prompt_width
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long)
        self.newline = newline
        self.repeat_ngram, self.repeat_times = repeat_ngram, repeat_times
        self.done: Optional[torch.Tensor] = None
        self.reason: Optional[torch.Tensor] = None
        self.has_text: Optional[torch.Tensor] = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        device = input_ids.device
        last = input_ids[:, -1]
        if self.done is None:
            rows = input_ids.shape[0]
            self.done = torch.zeros(rows, dtype=torch.bool, device=device)
            self.reason = torch.zeros(rows, dtype=torch.long, device=device)
            self.has_text = torch.zeros(rows, dtype=torch.bool, device=device)
            self.stop_ids = self.stop_ids.to(device)
            if self.newline is not None:
                self.newline = tuple(table.to(device) for table in self.newline)
        self.done |= torch.isin(last, self.stop_ids)
        if self.newline is not None:
            newline, visible, leading = self.newline
            token = last.clamp(0, newline.shape[0] - 1)
            at_newline = newline[token] & (self.has_text | leading[token]) & ~self.done
            self.has_text |= visible[token]
            self._end(at_newline, self.NEWLINE)
        generated = input_ids[:, self.prompt_width :]
        n = self.repeat_ngram
        if n and generated.shape[1] >= n * self.repeat_times:
            windows = generated.unfold(1, n, 1)  # (rows, positions, n)
            occurrences = (windows == windows[:, -1:, :]).all(dim=-1).sum(dim=1)
            self._end((occurrences >= self.repeat_times) & ~self.done, self.REPEATING)
        return self.done.clone()

    def _end(self, rows: torch.Tensor, reason: int) -> None:
        self.reason = torch.where(rows, torch.full_like(self.reason, reason), self.reason)
        self.done |= rows


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    batch_size: int = 16,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    synced_gpus: bool = False,
    min_batches: int = 0,
    stop_at_newline: bool = False,
    repeat_ngram: int = 0,
    repeat_times: int = 0,
    counts: Optional[dict[str, int]] = None,
    on_batch: Optional[BatchHook] = None,
) -> list[str]:
    """Responses to ``prompts`` (the generated text only, special tokens removed).

    ``min_batches`` pads the work with repeats of the last batch so that every rank runs the
    same number of forward passes. The tokenizer adds its BOS, except to a prompt that already
    starts with it (chat templates write it), so every prompt has one BOS, as in training.
    Generation ends at any of :func:`stop_token_ids`, and per row at the stop rules
    (:class:`RowStops`): with ``stop_at_newline`` a response is its first line; with
    ``repeat_ngram`` and ``repeat_times`` (0: off) a row ends once its latest ``repeat_ngram``
    tokens occurred ``repeat_times`` times. ``counts``, when given, gets the rows of
    :data:`STOP_COUNTS` added (real prompts only, not the filler batches). ``on_batch`` (a
    :data:`BatchHook`) is called after each batch of real prompts.
    """
    check_stop_rules(repeat_ngram, repeat_times, num_beams, stop_at_newline)
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None:  # a prompt that writes its own BOS (chat templates) gets no second one
        encoded = [ids[1:] if ids[:2] == [bos, bos] else ids for ids in encoded]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    n_real = len(batches)
    if batches or min_batches:
        filler = batches[-1] if batches else []
        batches += [filler] * max(0, min_batches - n_real)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: dict[int, str] = {}
    pad_id = tokenizer.pad_token_id
    stop = stop_token_ids(model, tokenizer)
    rules = stop_at_newline or repeat_ngram > 0
    newline = None
    if stop_at_newline:
        size = max(len(tokenizer), model.get_output_embeddings().weight.shape[0])
        newline = newline_tables(tokenizer, size)
    if counts is not None:
        for key in STOP_COUNTS:
            counts.setdefault(key, 0)
    try:
        for batch_index, batch in enumerate(batches):
            if not batch:  # a rank with no prompts still steps along with the others
                batch_ids = [[tokenizer.bos_token_id or pad_id]]
            else:
                batch_ids = [encoded[i] for i in batch]
            width = max(len(ids) for ids in batch_ids)
            input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for row, ids in enumerate(batch_ids):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention_mask[row, width - len(ids) :] = 1
            row_stops = RowStops(width, stop, newline, repeat_ngram, repeat_times)
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                use_cache=True,
                eos_token_id=stop,
                pad_token_id=pad_id,
                synced_gpus=synced_gpus,
                stopping_criteria=[row_stops] if rules else None,
            )
            if batch_index >= n_real:
                continue
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                text = text.strip()
                outputs[i] = text.split("\n", 1)[0].rstrip() if stop_at_newline else text
            batch_counts = dict.fromkeys(STOP_COUNTS, 0)
            _count_stops(batch_counts, generated[:, width:], row_stops, stop, max_new_tokens)
            if counts is not None:
                for key, value in batch_counts.items():
                    counts[key] += value
            if on_batch is not None:
                on_batch(batch, [outputs[i] for i in batch], batch_counts)
    finally:
        model.train(was_training)
    return [outputs[i] for i in range(len(prompts))]


def _count_stops(
    counts: dict[str, int],
    new_tokens: torch.Tensor,
    row_stops: RowStops,
    stop: list[int],
    max_new_tokens: int,
) -> None:
    """Add one batch's rows to ``counts``: ended by each stop rule, or by the length limit."""
    reason = row_stops.reason
    if reason is None:  # the rules were off (or nothing was generated)
        reason = torch.zeros(new_tokens.shape[0], dtype=torch.long, device=new_tokens.device)
    ended_on_stop_token = torch.isin(new_tokens, torch.tensor(stop, device=new_tokens.device))
    at_limit = (
        (new_tokens.shape[1] >= max_new_tokens) & ~ended_on_stop_token.any(dim=1) & (reason == 0)
    )
    counts["stopped_newline"] += int((reason == RowStops.NEWLINE).sum())
    counts["stopped_repeating"] += int((reason == RowStops.REPEATING).sum())
    counts["hit_limit"] += int(at_limit.sum())


def generate_on_all_ranks(
    model,
    tokenizer,
    prompts: list[str],
    batch_size: int = 16,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    sharded: bool = False,
    stop_at_newline: bool = False,
    repeat_ngram: int = 0,
    repeat_times: int = 0,
    counts: Optional[dict[str, int]] = None,
    on_batch: Optional[BatchHook] = None,
) -> list[str]:
    """:func:`generate` with the prompts split across ranks (:func:`~lightning_xllama.runtime.distributed.rank_share`)
    and the outputs gathered to all; ``counts`` gets the stop counts of all ranks added up.
    ``on_batch`` sees each rank's own batches, with indices into the whole ``prompts``."""
    rules = dict(
        stop_at_newline=stop_at_newline, repeat_ngram=repeat_ngram, repeat_times=repeat_times
    )
    if distributed.world_size() == 1:
        return generate(
            model,
            tokenizer,
            prompts,
            batch_size,
            max_new_tokens,
            num_beams,
            counts=counts,
            on_batch=on_batch,
            **rules,
        )
    share = distributed.rank_share(len(prompts))
    batches_per_rank = -(-distributed.share_size(len(prompts)) // batch_size)
    local_counts: dict[str, int] = {}
    shifted = None
    if on_batch is not None:

        def shifted(rows: list[int], texts: list[str], stops: dict[str, int]) -> None:
            on_batch([share.start + row for row in rows], texts, stops)

    local = generate(
        model,
        tokenizer,
        prompts[share.start : share.stop],
        batch_size,
        max_new_tokens,
        num_beams,
        synced_gpus=sharded,
        min_batches=batches_per_rank,
        counts=local_counts,
        on_batch=shifted,
        **rules,
    )
    gathered = distributed.gather_object((local, local_counts))
    if counts is not None:
        for _, rank_counts in gathered:
            for key, value in rank_counts.items():
                counts[key] = counts.get(key, 0) + value
    return [text for part, _ in gathered for text in part]
