"""Batched greedy (or beam) generation, the way a 7B model needs it.

Prompts are sorted by length so each batch pads little, left-padded so every row ends at the
same position, decoded with the KV cache until EOS or ``max_new_tokens``, and returned in input
order. Under DDP/FSDP each rank generates a contiguous share and the results are gathered once;
every rank runs the same number of batches (and ``synced_gpus`` keeps sharded models in step),
since a rank that skips a forward hangs the others.
"""

from __future__ import annotations

import torch

from lightning_xllama import distributed
from lightning_xllama.prompts import chat_end_of_turn


def stop_token_ids(model, tokenizer) -> list[int]:
    """Ids that end a response: the tokenizer's EOS, the model's generation-config EOS ids
    (LLaMA-3.1 lists several) and the end-of-turn tokens of the tokenizer's chat template, which
    a model tuned in that template ends its answers with (:func:`chat_end_of_turn`)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [tokenizer.eos_token_id]
    ids += configured if isinstance(configured, (list, tuple)) else [configured]
    ids += chat_end_of_turn(tokenizer)
    return list(dict.fromkeys(i for i in ids if i is not None))


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
) -> list[str]:
    """Responses to ``prompts`` (the generated text only, special tokens removed).

    ``min_batches`` pads the work with repeats of the last batch so that every rank runs the
    same number of forward passes. The tokenizer adds its BOS, except to a prompt that already
    starts with it (chat templates write it), so every prompt has one BOS, as in training.
    Generation ends at any of :func:`stop_token_ids`.
    """
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
            )
            if batch_index >= n_real:
                continue
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                outputs[i] = text.strip()
    finally:
        model.train(was_training)
    return [outputs[i] for i in range(len(prompts))]


def generate_on_all_ranks(
    model,
    tokenizer,
    prompts: list[str],
    batch_size: int = 16,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    sharded: bool = False,
) -> list[str]:
    """:func:`generate` with the prompts split across ranks (:func:`~lightning_xllama.distributed.rank_share`)
    and the outputs gathered to all."""
    if distributed.world_size() == 1:
        return generate(model, tokenizer, prompts, batch_size, max_new_tokens, num_beams)
    share = distributed.rank_share(len(prompts))
    batches_per_rank = -(-distributed.share_size(len(prompts)) // batch_size)
    local = generate(
        model,
        tokenizer,
        prompts[share.start : share.stop],
        batch_size,
        max_new_tokens,
        num_beams,
        synced_gpus=sharded,
        min_batches=batches_per_rank,
    )
    return [text for part in distributed.gather_object(local) for text in part]
