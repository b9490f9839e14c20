"""Prompt templates: the Alpaca format and the translation instructions.

The model sees ``prompt + response``; only the response (and EOS) is trained on. Translation
pairs become instructions by drawing one of :data:`TRANSLATION_INSTRUCTIONS` per example, so the
model does not tie translation to one fixed wording.
"""

from __future__ import annotations

import random

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

TRANSLATION_INSTRUCTIONS = (
    "Translate the following sentences from {src} to {tgt}.",
    "Translate this text from {src} into {tgt}.",
    "Please translate the {src} text below into {tgt}.",
    "Render the following {src} sentence in {tgt}.",
    "What is the {tgt} translation of the following {src} text?",
    "Convert this {src} passage into {tgt}.",
    "Give the {tgt} version of the {src} sentence below.",
    "Translate from {src} to {tgt}.",
    "Express the following {src} text in {tgt}.",
    "Provide a {tgt} translation for the {src} input.",
    "How would you say the following {src} sentence in {tgt}?",
    "Rewrite the {src} text below in {tgt}, keeping its meaning.",
    "Turn this {src} sentence into {tgt}.",
    "Translate the input from {src} into fluent {tgt}.",
    "The following text is in {src}. Translate it into {tgt}.",
    "Produce a faithful {tgt} translation of this {src} sentence.",
    "Write the input sentence in {tgt}; it is currently in {src}.",
    "Can you translate this {src} text to {tgt}?",
    "{src} to {tgt}: translate the sentence below.",
    "Make a {tgt} translation of the following {src} words.",
    "Put the following {src} text into {tgt}.",
    "Translate the given {src} sentence to {tgt} accurately.",
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt, with the input section only when there is an input."""
    if input:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def translation_instruction(src_name: str, tgt_name: str, rng: random.Random) -> str:
    """One of the paraphrases, drawn with ``rng`` (seeded per example by the caller)."""
    return rng.choice(TRANSLATION_INSTRUCTIONS).format(src=src_name, tgt=tgt_name)
