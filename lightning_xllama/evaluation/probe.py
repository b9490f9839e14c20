"""Representation probe: in which layers do parallel sentences get the same representation?

After instruction tuning on bilingual data, hidden states of a sentence and its translation move
closer, most in the middle layers (Zhu et al., 2023). For ``N`` parallel pairs, each sentence is
represented in every layer by the mean of its hidden states over its real tokens (padding and the
BOS token left out: BOS is the same in every sentence, and in LLaMA its state is huge, so it
would make every pair look alike). Per layer, the probe reports

- the mean cosine of parallel pairs (sentence ``i`` with translation ``i``) and of non-parallel
  pairs (``i`` with ``j != i``), and their gap;
- top-1 retrieval accuracy both ways: the share of sentences whose nearest translation by cosine
  is their own, source to target and target to source;
- the cosine gap and retrieval again on mean-centred vectors (each language's mean state of the
  layer subtracted): raw hidden states share a large common direction, which lifts every cosine,
  parallel or not, and a language's own offset can hide or fake alignment; centred, what remains
  is how sentence ``i`` and its translation stand out from their language's average.

``pooling: official`` computes the vectors as the paper's ``embedding.py`` does instead: the
sentence is the instruction of the Alpaca prompt (``alpaca_official``, BOS included), and each
vector is the masked sum of the prompt's hidden states divided by the batch's padded length, so
template tokens, BOS and the batch's longest prompt all enter it.

Layer 0 is the embedding output and layer ``i`` the output of decoder layer ``i`` (the last one
after the final norm, as Hugging Face returns it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from lightning_xllama.prompts import alpaca_official_prompt

Pooling = Literal["sentence", "official"]
POOLINGS: tuple[str, ...] = ("sentence", "official")


def check_pooling(pooling: str) -> Pooling:
    """``pooling`` if it is one of :data:`POOLINGS`; a clear error otherwise."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown probe pooling {pooling!r}; expected one of {POOLINGS}")
    return pooling


@torch.no_grad()
def pooled_hidden_states(
    model, tokenizer, sentences: list[str], batch_size: int = 16, pooling: Pooling = "sentence"
) -> torch.Tensor:
    """Pooled hidden states, shape ``[layers + 1, len(sentences), hidden]`` (float32, CPU).

    ``sentence``: each sentence is fed after a BOS token (when the tokenizer has one),
    right-padded; the vector is the sum of the states over the sentence's own tokens divided by
    their number. ``official`` (the paper's ``embedding.py``): each sentence is fed as the
    instruction of the Alpaca prompt, tokenised with the tokenizer's special tokens (BOS),
    right-padded; the vector is the sum of the states over the prompt's tokens divided by the
    batch's padded length (so it depends on the batch's longest prompt, as the paper's did).
    """
    if check_pooling(pooling) == "official":
        prompts = [alpaca_official_prompt(sentence) for sentence in sentences]
        encoded = tokenizer(prompts)["input_ids"]
    else:
        encoded = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"sentence {index} has no tokens: {sentences[index]!r}")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pooled = []
    try:
        for start in range(0, len(encoded), batch_size):
            prefix = bos if pooling == "sentence" else []
            batch = [prefix + ids for ids in encoded[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            sentence_mask = attention_mask.clone()
            sentence_mask[:, : len(prefix)] = 0
            outputs = model(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                output_hidden_states=True,
                use_cache=False,
            )
            states = (
                torch.stack(outputs.hidden_states).float().cpu()
            )  # [layers + 1, batch, seq, hidden]
            weights = sentence_mask[None, :, :, None].float()
            total = (states * weights).sum(dim=2)
            pooled.append(total / (width if pooling == "official" else weights.sum(dim=2)))
    finally:
        model.train(was_training)
    return torch.cat(pooled, dim=1)


@dataclass
class Alignment:
    """Per-layer alignment of parallel sentences (lists indexed by layer, 0 = embeddings)."""

    cosine_parallel: list[float]
    cosine_nonparallel: list[float]
    cosine_gap: list[float]
    retrieval_src_to_tgt: list[float]
    retrieval_tgt_to_src: list[float]
    centered_cosine_gap: list[float]
    centered_retrieval_src_to_tgt: list[float]
    centered_retrieval_tgt_to_src: list[float]

    @property
    def peak_layer(self) -> int:
        """The layer where parallel pairs stand out most from non-parallel ones (largest gap)."""
        return max(range(len(self.cosine_gap)), key=self.cosine_gap.__getitem__)

    def as_dict(self) -> dict[str, list[float]]:
        return asdict(self)


def alignment(source: torch.Tensor, target: torch.Tensor) -> Alignment:
    """Alignment of pooled states ``[layers, N, hidden]`` where row ``i`` of both is one pair."""
    if source.shape != target.shape or source.dim() != 3:
        raise ValueError(
            "expected two [layers, N, hidden] tensors of one shape, "
            f"got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    count = source.shape[1]
    if count < 2:
        raise ValueError(
            f"the probe needs at least 2 pairs to compare against non-parallel ones, got {count}"
        )
    parallel, nonparallel, src_to_tgt, tgt_to_src = _pair_scores(source, target)
    centered = _pair_scores(
        source - source.mean(dim=1, keepdim=True), target - target.mean(dim=1, keepdim=True)
    )
    return Alignment(
        parallel.tolist(),
        nonparallel.tolist(),
        (parallel - nonparallel).tolist(),
        src_to_tgt.tolist(),
        tgt_to_src.tolist(),
        (centered[0] - centered[1]).tolist(),
        centered[2].tolist(),
        centered[3].tolist(),
    )


def _pair_scores(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per layer: mean cosine of parallel and of non-parallel pairs, top-1 retrieval both ways."""
    count = source.shape[1]
    cosine = F.normalize(source.double(), dim=-1) @ F.normalize(target.double(), dim=-1).transpose(
        1, 2
    )
    diagonal = torch.eye(count, dtype=torch.bool)
    truth = torch.arange(count)
    return (
        cosine[:, diagonal].mean(dim=1),
        cosine[:, ~diagonal].mean(dim=1),
        (cosine.argmax(dim=2) == truth).double().mean(dim=1),
        (cosine.argmax(dim=1) == truth).double().mean(dim=1),
    )


def probe(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 16,
    pooling: Pooling = "sentence",
) -> Alignment:
    """The alignment of ``(source, target)`` translation pairs in every layer of ``model``
    (``pooling``: see :func:`pooled_hidden_states`)."""
    sources = [source for source, _ in pairs]
    targets = [target for _, target in pairs]
    sources = pooled_hidden_states(model, tokenizer, sources, batch_size, pooling)
    targets = pooled_hidden_states(model, tokenizer, targets, batch_size, pooling)
    return alignment(sources, targets)


def plot_alignment(result: Alignment, path: str | Path, title: str) -> Path:
    """Save the per-layer curves (cosines left, retrieval right) as an image at ``path``."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    from matplotlib.ticker import MaxNLocator

    layers = list(range(len(result.cosine_gap)))
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.plot(layers, result.cosine_parallel, marker="o", label="parallel pairs")
    left.plot(layers, result.cosine_nonparallel, marker="o", label="non-parallel pairs")
    left.plot(layers, result.cosine_gap, marker="o", linestyle="--", label="gap")
    left.set(xlabel="layer (0 = embeddings)", ylabel="mean cosine", title="cosine similarity")
    right.plot(layers, result.retrieval_src_to_tgt, marker="o", label="source -> target")
    right.plot(layers, result.retrieval_tgt_to_src, marker="o", label="target -> source")
    right.set(
        xlabel="layer (0 = embeddings)",
        ylabel="top-1 accuracy",
        ylim=(-0.02, 1.02),
        title="retrieval",
    )
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
