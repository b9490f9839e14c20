"""Examples to token ids: the prompt is masked out of the loss, the response ends with EOS."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

from lightning_xllama.data.sources import Example
from lightning_xllama.prompts import Template, check_template, prompt_and_response

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (prompt and padding)."""

Overflow = Literal["truncate", "drop", "mask"]
"""What happens to an example longer than ``max_length``: ``truncate`` its response (one whose
prompt alone reaches the limit is dropped), ``drop`` it, or ``mask``: truncate it like the paper's
``train.py`` (the whole text cut at ``max_length``), so one whose prompt alone reaches the limit is
kept with every label masked (no loss). Each is counted."""
OVERFLOWS: tuple[str, ...] = ("truncate", "drop", "mask")
MASKED = "prompt alone reaches max_length (kept, no loss)"
"""How a report names the examples ``overflow: mask`` keeps with every label masked."""


@dataclass
class EncodingReport:
    """What encoding did to a data set: nothing is shortened or dropped without a count."""

    encoded: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    masked: int = 0
    """Encoded examples kept with every label masked (``overflow: mask``), among ``truncated``."""

    def add(self, encoded: dict) -> None:
        if "dropped" in encoded:
            self.dropped[encoded["dropped"]] += 1
        else:
            self.encoded += 1
            self.truncated += encoded["truncated"]
            self.masked += encoded.get("masked", False)

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items()) or "none"
        masked = f" ({self.masked} of them masked: {MASKED})" if self.masked else ""
        return (
            f"{self.encoded} examples encoded, {self.truncated} truncated{masked}, "
            f"dropped: {dropped}"
        )


def encode_examples(
    tokenizer,
    examples: Sequence[Example],
    max_length: int,
    overflow: Overflow = "truncate",
    template: Template = "alpaca",
) -> list[dict]:
    """Each example as ``{input_ids, labels, truncated}`` (``masked`` too when ``overflow: mask``
    kept it with no label), or ``{dropped: reason}``.

    Alpaca: ``input_ids`` = BOS + prompt + response + EOS. Chat: the template's own text, which
    writes its special tokens. ``labels`` hide everything before the response. The prompt and
    response are tokenised apart (one call for the whole list) so the boundary is exact and
    matches what the model sees at generation time (the prompt alone, then its own
    continuation). ``alpaca_official`` does what the paper's ``train.py`` does instead: prompt and
    response tokenised as one text (the response follows ``### Response:`` with no space, so apart
    they would tokenise differently), masking as many leading tokens as the prompt alone has.
    An example longer than ``max_length`` is truncated from the end of the response (keeping at
    least one response token) or dropped, by ``overflow``; ``mask`` truncates as the paper's
    ``train.py`` does (``max_length`` tokens kept, labels masked up to the prompt's length), so an
    example whose prompt alone reaches ``max_length`` is kept with every label masked.
    """
    if overflow not in OVERFLOWS:
        raise ValueError(f"overflow must be one of {OVERFLOWS}, got {overflow!r}")
    check_template(template)
    texts = [
        prompt_and_response(e.instruction, e.input, e.output, template, tokenizer) for e in examples
    ]
    if template == "chat":
        prefix, suffix = [], []
    else:
        prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        suffix = [tokenizer.eos_token_id]
    if not texts:
        return []
    prompts = tokenizer([t[0] for t in texts], add_special_tokens=False)["input_ids"]
    if template == "alpaca_official":
        joined = tokenizer([t[0] + t[1] for t in texts], add_special_tokens=False)["input_ids"]
        prompts, responses = (
            [ids[: len(p)] for ids, p in zip(joined, prompts)],
            [ids[len(p) :] for ids, p in zip(joined, prompts)],
        )
    else:
        responses = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    encoded = []
    for prompt, response in zip(prompts, responses):
        prompt, response = prefix + prompt, response + suffix
        truncated = len(prompt) + len(response) > max_length
        if truncated and overflow == "drop":
            encoded.append({"dropped": "longer than max_length"})
            continue
        if truncated and len(prompt) >= max_length and overflow == "mask":
            kept = (prompt + response)[:max_length]
            encoded.append(
                {
                    "input_ids": kept,
                    "labels": [IGNORE_INDEX] * len(kept),
                    "truncated": True,
                    "masked": True,
                }
            )
            continue
        if truncated and len(prompt) >= max_length:
            encoded.append({"dropped": "prompt alone reaches max_length"})
            continue
        response = response[: max_length - len(prompt)]
        encoded.append(
            {
                "input_ids": prompt + response,
                "labels": [IGNORE_INDEX] * len(prompt) + response,
                "truncated": truncated,
            }
        )
    return encoded


def encode_example(
    tokenizer,
    example: Example,
    max_length: int,
    overflow: Overflow = "truncate",
    report: Optional[EncodingReport] = None,
    template: Template = "alpaca",
) -> Optional[dict]:
    """One example (see :func:`encode_examples`); None when dropped. Both are counted in ``report``."""
    encoded = encode_examples(tokenizer, [example], max_length, overflow, template)[0]
    if report is not None:
        report.add(encoded)
    return None if "dropped" in encoded else encoded
