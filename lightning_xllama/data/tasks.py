"""Records to training examples: translation pairs become translation instructions."""

from __future__ import annotations

import random
from typing import Literal

from lightning_xllama.data.sources import Example
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import (
    TRANSLATION_INSTRUCTIONS,
    InstructionRule,
    translation_instruction,
)

Direction = Literal["en-x", "x-en", "both"]


def pair_examples(
    src: str,
    tgt: str,
    src_lang: str,
    tgt_lang: str,
    direction: Direction,
    rng: random.Random,
    rule: InstructionRule = "package",
    line: int = 0,
) -> list[Example]:
    """A pair as translation instructions: ``src -> tgt`` (``en-x``), ``tgt -> src`` (``x-en``)
    or both, in that order. ``rule`` picks each instruction
    (:func:`~lightning_xllama.prompts.translation_instruction`): ``package`` draws a paraphrase
    with ``rng``, which the caller seeds per pair, so the same corpus and seed always give the
    same instructions; ``official`` takes the paper's by the pair's 0-based ``line`` in its file.
    """
    if direction not in ("en-x", "x-en", "both"):
        raise ValueError(f"direction must be 'en-x', 'x-en' or 'both', got {direction!r}")
    examples = []
    if direction in ("en-x", "both"):
        examples.append(
            Example(
                translation_instruction(rule, line, rng, src_lang, tgt_lang),
                src,
                tgt,
                "translation",
                tgt_lang,
            )
        )
    if direction in ("x-en", "both"):
        examples.append(
            Example(
                translation_instruction(rule, line, rng, tgt_lang, src_lang),
                tgt,
                src,
                "translation",
                src_lang,
            )
        )
    return examples


def translation_prompt_instruction(src_lang: str, tgt_lang: str) -> str:
    """The fixed instruction used at evaluation time (the first paraphrase)."""
    return TRANSLATION_INSTRUCTIONS[0].format(
        src=get_language(src_lang).name, tgt=get_language(tgt_lang).name
    )
