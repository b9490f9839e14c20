"""Loading Hugging Face models and tokenizers by local folder or hub name, safely.

A path that looks local but is missing fails at once with the command that creates the demo's
base model; a folder without tokenizer files is named with what it holds (transformers would fail
inside SentencePiece, naming neither); ``trust_remote_code`` stays off unless the user turns it on.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

PREPARE_COMMAND = "python -m lightning_xllama prepare-demo"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
    "tokenizer.tiktoken",
)
"""Files of which a local tokenizer folder holds at least one (fast, SentencePiece, BPE, WordPiece
or tiktoken tokenizers). Without any, transformers fails deep inside SentencePiece with
``Either model_file or model_proto must be specified``, naming neither folder nor file."""


def looks_like_local_path(name: str) -> bool:
    """Hub names are ``name`` or ``org/name``; anything else is meant as a folder."""
    return (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or os.sep != "/"
        and os.sep in name
        or Path(name).expanduser().exists()
    )


def check_model_path(name: str, kind: str = "model") -> None:
    """Fail before any work when a local model (or tokenizer) folder is missing or incomplete."""
    if not looks_like_local_path(name):
        return
    path = Path(name).expanduser()
    if path.is_file():  # e.g. the weights file or config.json instead of the folder holding them
        raise FileNotFoundError(
            f"{kind} path {name!r} is a file, not a folder: point model_name_or_path at the "
            f"Hugging Face model folder (config.json + weights + tokenizer; perhaps "
            f"{str(path.parent)!r}, the folder holding this file) or at a hub name"
        )
    if not path.is_dir():
        raise FileNotFoundError(
            f"{kind} path {name!r} does not exist. For the offline demo, create it with "
            f"`{PREPARE_COMMAND}`; otherwise point model_name_or_path at a Hugging Face model "
            "folder (config.json + weights + tokenizer) or a hub name."
        )
    if kind == "model" and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model path {name!r} has no config.json: not a Hugging Face model folder"
        )
    if kind == "tokenizer" and not any((path / file).is_file() for file in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, or another of "
            f"{', '.join(TOKENIZER_FILES[3:])}) in {path}; it holds {_listing(path)}. Save "
            "the tokenizer there (`tokenizer.save_pretrained(folder)`), e.g. copy the base model's "
            "tokenizer files, or point model_name_or_path at a folder that has them."
        )


def _listing(path: Path, most: int = 12) -> str:
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return "nothing"
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


RESERVED_TOKEN = re.compile(r"reserved|unused", re.IGNORECASE)
"""Special tokens a tokenizer keeps unused, by name: LLaMA-3's ``<|reserved_special_token_N|>``,
Gemma's ``<unusedN>``."""


def choose_pad_token(tokenizer) -> tuple[Optional[str], str]:
    """The token that pads batches of a tokenizer without its own, and why.

    In order: the UNK token (LLaMA-1/2, Mistral: SentencePiece always has one); else the first
    reserved special token the tokenizer already has (LLaMA-3's
    ``<|reserved_special_token_0|>``): a token of its own, so a pad is never taken for real
    text, and no new embedding row (a resize would change the shapes the checkpoints, the
    sharded loading and the export share); else the EOS token. Padding is found by position,
    never by id (the collators label it -100 and mask it out of attention), so an EOS that pads
    still closes every response and is still learned there.
    """
    if tokenizer.pad_token is not None:
        return None, "the tokenizer's own pad token"
    if tokenizer.unk_token is not None:
        return tokenizer.unk_token, (
            "the tokenizer has no pad token; its UNK token pads (padding is masked out of the loss)"
        )
    reserved = sorted(
        (token_id, token.content)
        for token_id, token in tokenizer.added_tokens_decoder.items()
        if token.special and RESERVED_TOKEN.search(token.content)
    )
    if reserved:
        return reserved[0][1], (
            "the tokenizer has no pad token nor UNK; its first reserved special token pads "
            "(padding is masked out of the loss)"
        )
    return tokenizer.eos_token, (
        "the tokenizer has no pad token, UNK nor reserved special token; its EOS token pads "
        "(padding is masked out of the loss by position, so each response's closing EOS is "
        "still learned)"
    )


def load_tokenizer(
    name: str, trust_remote_code: bool = False, padding_side: str = "right", use_fast: bool = True
):
    """The model's tokenizer, with a pad token set (LLaMA ships none: :func:`choose_pad_token`)
    and the choice logged. ``use_fast=False``: the slow (Python) tokenizer, as the paper's
    ``train.py`` loads it; a tokenizer without a slow version stays fast, with a warning."""
    from transformers import AutoTokenizer

    check_model_path(name, kind="tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, trust_remote_code=trust_remote_code, use_fast=use_fast
        )
    except (OSError, ValueError, TypeError) as err:
        if not looks_like_local_path(name):
            raise
        # e.g. a tokenizer_config.json whose tokenizer.model is missing: SentencePiece's own
        # message names neither the folder nor the file
        path = Path(name).expanduser()
        slow = (
            ""
            if use_fast
            else " (the slow tokenizer, use_fast_tokenizer false, needs its vocabulary file, "
            "e.g. tokenizer.model; set use_fast_tokenizer: true to load tokenizer.json)"
        )
        raise ValueError(
            f"could not load a tokenizer from {path} (it holds {_listing(path)}){slow}: {err}"
        ) from err
    if not use_fast and tokenizer.is_fast:
        log.warning("tokenizer %s has no slow version: the fast one is used", name)
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer {name!r} has no EOS token; responses must end with one")
    pad, reason = choose_pad_token(tokenizer)
    if pad is not None:
        tokenizer.pad_token = pad
        log.info("tokenizer %s has no pad token; using %r (%s)", name, pad, reason)
    tokenizer.pad_token_reason = reason
    tokenizer.padding_side = padding_side
    return tokenizer


def pad_token_choice(tokenizer) -> dict:
    """Which token pads and why (``token``, ``id``, ``reason``), as :func:`load_tokenizer` chose it."""
    reason = getattr(tokenizer, "pad_token_reason", None)
    if reason is None:
        reason = (
            "the tokenizer's own pad token" if tokenizer.pad_token is not None else "no pad token"
        )
    return {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "reason": reason}
