"""Prompt templates: the Alpaca format (default), the tokenizer's chat template, and the
translation instructions.

The model sees ``prompt + response``; only the response (and EOS) is trained on. Translation
pairs become instructions by drawing one of :data:`TRANSLATION_INSTRUCTIONS` per example, so the
model does not tie translation to one fixed wording.
"""

from __future__ import annotations

import random
from typing import Literal, Optional

Template = Literal["alpaca", "chat"]
"""``alpaca``: the Alpaca prompt (the paper's); ``chat``: the tokenizer's own chat template."""

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


def chat_turns(
    tokenizer, instruction: str, input: str = "", output: Optional[str] = None
) -> tuple[str, str]:
    """Prompt and response text of an example in the tokenizer's chat template, for chat models.

    The user turn is the instruction, followed by the input after a blank line when there is
    one. The response is what the template writes after the generation prompt for the
    assistant turn (its end-of-turn marker included), so the loss covers exactly what the model
    must generate.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "template 'chat' needs a tokenizer with a chat template (tokenizer_config.json: "
            "chat_template); this tokenizer has none: use template 'alpaca'"
        )
    messages = [{"role": "user", "content": f"{instruction}\n\n{input}" if input else instruction}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if output is None:
        return prompt, ""
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": output}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError(
            "the tokenizer's chat template does not render a conversation as its generation prompt "
            f"followed by the answer, so the prompt cannot be masked exactly; prompt: {prompt!r}, "
            f"conversation: {full!r}"
        )
    return prompt, full[len(prompt) :]


def render_prompt(
    instruction: str, input: str = "", template: Template = "alpaca", tokenizer=None
) -> str:
    """The prompt a model is given for an instruction, in the chosen template."""
    if template == "chat":
        return chat_turns(tokenizer, instruction, input)[0]
    if template != "alpaca":
        raise ValueError(f"template must be 'alpaca' or 'chat', got {template!r}")
    return alpaca_prompt(instruction, input)


def translation_instruction(src_name: str, tgt_name: str, rng: random.Random) -> str:
    """One of the paraphrases, drawn with ``rng`` (seeded per example by the caller)."""
    return rng.choice(TRANSLATION_INSTRUCTIONS).format(src=src_name, tgt=tgt_name)
