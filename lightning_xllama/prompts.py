"""Prompt templates: the Alpaca format (default), the official x-LLM form of it, the tokenizer's
chat template, the translation instructions and the official QA wording.

The model sees ``prompt + response``; only the response (and EOS) is trained on. Translation
pairs become instructions by drawing one of :data:`TRANSLATION_INSTRUCTIONS` per example, so the
model does not tie translation to one fixed wording. A model is evaluated in the template it was
trained with (:func:`render_prompt` for every template).
"""

from __future__ import annotations

import random
from typing import Literal, Optional

from lightning_xllama.languages import QAPromptWords, get_language

Template = Literal["alpaca", "alpaca_official", "chat"]
"""``alpaca``: the Alpaca prompt, ending ``### Response:`` and a newline (the package's default);
``alpaca_official``: the same text ending at ``### Response:`` with nothing after it, as the
paper's code trains and prompts (x-LLM ``train.py``, ``PROMPT_DICT``); ``chat``: the tokenizer's
own chat template."""
TEMPLATES: tuple[str, ...] = ("alpaca", "alpaca_official", "chat")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

ALPACA_OFFICIAL_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
"""x-LLM ``train.py`` ``PROMPT_DICT["prompt_input"]``: :data:`ALPACA_WITH_INPUT` without its last
newline; the response follows the colon directly (training tokenises them as one text)."""
ALPACA_OFFICIAL_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
"""x-LLM ``train.py`` ``PROMPT_DICT["prompt_no_input"]``: :data:`ALPACA_NO_INPUT` without its last
newline."""

OFFICIAL_QA_WORDS: dict[str, QAPromptWords] = {
    "ar": QAPromptWords(
        "الرجاء الإجابة على الأسئلة بناءً على الفقرات التالية", "فقرة", "سؤال", "إجابة"
    ),
    "el": QAPromptWords(
        "Απαντήστε στις ερωτήσεις με βάση τις παρακάτω παραγράφους",
        "παράγραφος",
        "ερώτηση",
        "Απάντηση",
    ),
    "en": QAPromptWords(
        "Answer the final question with following context", "Context", "Question", "Answer"
    ),
    "hi": QAPromptWords("कृपया निम्नलिखित पैराग्राफ के अनुसार प्रश्नों के उत्तर दें", "अनुच्छेद", "सवाल", "उत्तर"),
    "tr": QAPromptWords(
        "Lütfen soruları aşağıdaki paragraflara göre cevaplayınız", "paragraf", "soru", "Cevap"
    ),
    "vi": QAPromptWords(
        "Hãy trả lời các câu hỏi theo đoạn văn sau", "đoạn văn", "câu hỏi", "Trả lời"
    ),
    "zh": QAPromptWords("请根据以下段落，回答问题", "段落", "问题", "答案"),
}
"""The paper's XQuAD/MLQA prompt words per language (x-LLM ``data/xquad/xquad.py`` and
``data/mlqa/mlqa.py``: ``_INSTRUCTIONS`` and the labels of ``_TEMPLATES``). Other languages use the
words of the language registry in the same layout (:func:`official_qa_input`)."""

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


def check_template(template: str, where: str = "template") -> Template:
    """``template`` if it is one of :data:`TEMPLATES`; a clear error naming ``where`` otherwise."""
    if template not in TEMPLATES:
        raise ValueError(f"{where}: unknown template {template!r}; expected one of {TEMPLATES}")
    return template


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt, with the input section only when there is an input."""
    if input:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def alpaca_official_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt as the paper's code writes it: ending at ``### Response:`` (an input
    counts when it is not empty, as in x-LLM ``train.py``)."""
    if input:
        return ALPACA_OFFICIAL_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_OFFICIAL_NO_INPUT.format(instruction=instruction)


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


def chat_end_of_turn(tokenizer) -> list[int]:
    """Ids of the special tokens the tokenizer's chat template writes right after an assistant
    turn's text (LLaMA-3's ``<|eot_id|>``, Qwen's ``<|im_end|>``); none without a template.

    A model tuned in the template learns to end its answers with them, while the tokenizer's
    EOS may be another token (a base LLaMA-3's is ``<|end_of_text|>``): generation stops at them.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        return []
    answer = "Answer"
    response = chat_turns(tokenizer, "Question", "", answer)[1]
    if not response.startswith(answer):
        return []
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    special.update(tokenizer.all_special_ids)
    ids = tokenizer(response[len(answer) :], add_special_tokens=False)["input_ids"]
    return [i for i in ids if i in special]


def prompt_and_response(
    instruction: str, input: str, output: str, template: Template = "alpaca", tokenizer=None
) -> tuple[str, str]:
    """Prompt and response text of a training example in ``template``: the one function encoding
    and generation share, so a model is prompted exactly as it was trained (``tokenizer`` is
    needed for ``chat`` only)."""
    check_template(template)
    if template == "chat":
        return chat_turns(tokenizer, instruction, input, output)
    if template == "alpaca_official":
        return alpaca_official_prompt(instruction, input), output
    return alpaca_prompt(instruction, input), output


def render_prompt(
    instruction: str, input: str = "", template: Template = "alpaca", tokenizer=None
) -> str:
    """The prompt a model is given for an instruction, in the chosen template."""
    check_template(template)
    if template == "chat":
        return chat_turns(tokenizer, instruction, input)[0]
    return prompt_and_response(instruction, input, "", template)[0]


def official_qa_words(lang: str) -> tuple[QAPromptWords, bool]:
    """The paper's QA words for ``lang`` and True; for a language the paper's code has no words
    for, the language registry's words (for synthetic languages, English ones) and False."""
    if lang in OFFICIAL_QA_WORDS:
        return OFFICIAL_QA_WORDS[lang], True
    return get_language(lang).qa, False


def official_qa_input(context: str, question: str, words: QAPromptWords) -> str:
    """The input of the paper's QA prompt: passage, question and an open answer label, one a line
    (``段落: ...``, ``问题: ...``, ``答案: `` for zh); passage and question stripped, as the
    paper's loader does."""
    return (
        f"{words.context}: {context.strip()}\n{words.question}: {question.strip()}\n"
        f"{words.answer}: "
    )


def translation_instruction(src_name: str, tgt_name: str, rng: random.Random) -> str:
    """One of the paraphrases, drawn with ``rng`` (seeded per example by the caller)."""
    return rng.choice(TRANSLATION_INSTRUCTIONS).format(src=src_name, tgt=tgt_name)
