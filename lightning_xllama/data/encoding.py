"""Examples to token ids: the prompt is masked out of the loss, the response ends with EOS."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Optional

from lightning_xllama.data.sources import Example
from lightning_xllama.prompts import alpaca_prompt

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (prompt and padding)."""

Overflow = Literal["truncate", "drop"]


@dataclass
class EncodingReport:
    """What encoding did to a data set: nothing is shortened or dropped without a count."""

    encoded: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items()) or "none"
        return f"{self.encoded} examples encoded, {self.truncated} truncated, dropped: {dropped}"


def encode_example(
    tokenizer,
    example: Example,
    max_length: int,
    overflow: Overflow = "truncate",
    report: Optional[EncodingReport] = None,
) -> Optional[dict]:
    """``input_ids`` = BOS + prompt + response + EOS; ``labels`` hide BOS and the prompt.

    The prompt and response are tokenised apart so the boundary is exact and matches what the
    model sees at generation time (the prompt alone, then its own continuation). An example
    longer than ``max_length`` is truncated from the end of the response (keeping at least one
    response token) or dropped, by ``overflow``; either is counted in ``report``.
    """
    report = report if report is not None else EncodingReport()
    prompt = tokenizer(alpaca_prompt(example.instruction, example.input), add_special_tokens=False)["input_ids"]
    response = tokenizer(example.output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt = prefix + prompt
    if len(prompt) + len(response) > max_length:
        if overflow == "drop":
            report.dropped["longer than max_length"] += 1
            return None
        if len(prompt) >= max_length:
            report.dropped["prompt alone reaches max_length"] += 1
            return None
        response = response[: max_length - len(prompt)]
        report.truncated += 1
    report.encoded += 1
    return {
        "input_ids": prompt + response,
        "labels": [IGNORE_INDEX] * len(prompt) + response,
    }
