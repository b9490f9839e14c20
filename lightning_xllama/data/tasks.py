"""Records to training examples: translation pairs become translation instructions."""

from __future__ import annotations

import random
from typing import Iterable, Literal

from lightning_xllama.data.sources import Example
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import TRANSLATION_INSTRUCTIONS, translation_instruction

Direction = Literal["en-x", "x-en", "both"]


def translation_examples(
    pairs: Iterable[tuple[str, str]],
    src_lang: str,
    tgt_lang: str,
    direction: Direction = "en-x",
    seed: int = 0,
) -> list[Example]:
    """Turn ``(src, tgt)`` pairs into instructions, in one direction or both.

    The paraphrase of each example is drawn from a generator seeded by ``seed`` and the pair's
    position, so the same corpus and seed always give the same instructions.
    """
    if direction not in ("en-x", "x-en", "both"):
        raise ValueError(f"direction must be 'en-x', 'x-en' or 'both', got {direction!r}")
    src_name, tgt_name = get_language(src_lang).name, get_language(tgt_lang).name
    examples = []
    for index, (src, tgt) in enumerate(pairs):
        rng = random.Random(f"{seed}:{index}")
        if direction in ("en-x", "both"):
            instruction = translation_instruction(src_name, tgt_name, rng)
            examples.append(Example(instruction, src, tgt, "translation", tgt_lang))
        if direction in ("x-en", "both"):
            instruction = translation_instruction(tgt_name, src_name, rng)
            examples.append(Example(instruction, tgt, src, "translation", src_lang))
    return examples


def translation_prompt_instruction(src_lang: str, tgt_lang: str) -> str:
    """The fixed instruction used at evaluation time (the first paraphrase)."""
    return TRANSLATION_INSTRUCTIONS[0].format(
        src=get_language(src_lang).name, tgt=get_language(tgt_lang).name
    )
