"""Prompt templates: the Alpaca format (default), the official x-LLM form of it, the tokenizer's
chat template, the translation instructions and the official QA wording.

The model sees ``prompt + response``; only the response (and EOS) is trained on. Translation
pairs become instructions by drawing one of :data:`TRANSLATION_INSTRUCTIONS` per example, so the
model does not tie translation to one fixed wording; the ``official`` rule rotates the paper's 33
instructions by line index instead (:func:`translation_instruction`). A model is evaluated in the template it was
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


OFFICIAL_TRANSLATION_INSTRUCTIONS = (
    "Translate the following sentences from {src} to {tgt}.",
    "What do the following sentences mean in {tgt}?",
    "Please provide the {tgt} translation for the following sentences.",
    "Convert the subsequent sentences from {src} into {tgt}.",
    "Render the listed sentences in {tgt} from their original {src} form.",
    "Transform the upcoming sentences from {src} language to {tgt} language.",
    "Change the given sentences from {src} to {tgt} format.",
    "Turn the following sentences from their {src} version to the {tgt} version.",
    "Adapt the mentioned sentences from {src} to the {tgt} language.",
    "Transpose the next sentences from the {src} format to the {tgt} format.",
    "Switch the specified sentences from their {src} form to {tgt} form.",
    "Reinterpret the ensuing sentences from {src} to {tgt} language.",
    "Modify the forthcoming sentences, converting them from {src} to {tgt}.",
    "How can the subsequent sentences be interpreted in {tgt}?",
    "What is the meaning of these sentences when translated to {tgt}?",
    "In the context of {tgt}, what do the upcoming sentences signify?",
    "How would you express the meaning of the following sentences in {tgt}?",
    "What is the significance of the mentioned sentences in {tgt}?",
    "In {tgt}, what do the given sentences convey?",
    "When translated to {tgt}, what message do these sentences carry?",
    "What is the intended meaning of the ensuing sentences in {tgt}?",
    "How should the following sentences be comprehended in {tgt}?",
    "In terms of {tgt}, what do the next sentences imply?",
    "Kindly furnish the {tgt} translation of the subsequent sentences.",
    "Could you supply the {tgt} translation for the upcoming sentences?",
    "Please offer the {tgt} rendition for the following statements.",
    "I'd appreciate it if you could present the {tgt} translation for these sentences.",
    "Can you deliver the {tgt} translation for the mentioned sentences?",
    "Please share the {tgt} version of the given sentences.",
    "It would be helpful if you could provide the {tgt} translation of the ensuing sentences.",
    "Kindly submit the {tgt} interpretation for the next sentences.",
    "Please make available the {tgt} translation for the listed sentences.",
    "Can you reveal the {tgt} translation of the forthcoming sentences?",
)
"""The paper's 33 translation instructions, in its order (x-LLM ``data/translation/
translation.py``, ``_INSTRUCTIONS``): training pair ``i`` gets ``[i % 33]``, every test sentence
``[0]``. Many name only the target language."""

OFFICIAL_LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic",
    "de": "German",
    "el": "Modern Greek (1453-)",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "ja": "Japanese",
    "ro": "Romanian",
    "ru": "Russian",
    "sw": "Swahili (macrolanguage)",
    "th": "Thai",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "zh": "Chinese",
}
"""Language names in the paper's instructions: ``iso639.languages.get(alpha2=code).name`` of the
``iso-639`` 0.4.5 package its code imports (ISO 639-3 reference names, hence ``Modern Greek
(1453-)``)."""

InstructionRule = Literal["package", "official"]
"""How a translation pair gets its instruction: ``package`` (default): one of the package's
paraphrases at random, registry names; ``official``: the paper's list by line index, the paper's
names (:func:`translation_instruction`)."""
INSTRUCTION_RULES: tuple[str, ...] = ("package", "official")


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


def official_language_name(code: str) -> str:
    """The language's name as the paper's code writes it in translation instructions (the
    ``iso-639`` package's ISO 639 name: ``Modern Greek (1453-)`` for ``el``); the registry's name
    for a language without one in :data:`OFFICIAL_LANGUAGE_NAMES`."""
    return OFFICIAL_LANGUAGE_NAMES.get(code) or get_language(code).name


def check_instruction_rule(rule: str, where: str = "translation_instructions") -> InstructionRule:
    """``rule`` if it is one of :data:`INSTRUCTION_RULES`; a clear error naming ``where`` otherwise."""
    if rule not in INSTRUCTION_RULES:
        raise ValueError(
            f"{where}: unknown translation instruction rule {rule!r}; expected one of "
            f"{INSTRUCTION_RULES}"
        )
    return rule


def translation_instruction(
    rule: InstructionRule,
    line_index: int,
    rng: random.Random,
    src_lang: str,
    tgt_lang: str,
) -> str:
    """The instruction of one training pair, ``src_lang`` to ``tgt_lang`` (registry codes).

    Args:
        rule: ``package``: one of :data:`TRANSLATION_INSTRUCTIONS` drawn with ``rng`` (seeded per
            pair by the caller), with the registry's language names. ``official``: the paper's
            rotation, :data:`OFFICIAL_TRANSLATION_INSTRUCTIONS` ``[line_index % 33]`` with the
            paper's language names (x-LLM ``data/translation/translation.py``, training split).
        line_index: the pair's 0-based line in its parallel files, empty lines counted (the
            official rule's key); unused by ``package``.
        rng: the random source of ``package``; unused by ``official``.
        src_lang: the source language's code.
        tgt_lang: the target language's code.
    """
    check_instruction_rule(rule)
    if rule == "official":
        if line_index < 0:
            raise ValueError(f"line_index must be 0 or more, got {line_index}")
        template = OFFICIAL_TRANSLATION_INSTRUCTIONS[
            line_index % len(OFFICIAL_TRANSLATION_INSTRUCTIONS)
        ]
        return template.format(
            src=official_language_name(src_lang), tgt=official_language_name(tgt_lang)
        )
    src_name, tgt_name = get_language(src_lang).name, get_language(tgt_lang).name
    return rng.choice(TRANSLATION_INSTRUCTIONS).format(src=src_name, tgt=tgt_name)


def evaluation_translation_instruction(rule: InstructionRule, src_lang: str, tgt_lang: str) -> str:
    """The instruction a test sentence is translated with: the first paraphrase of the rule's
    list (the paper's code uses ``_INSTRUCTIONS[0]`` for every test line), with the rule's
    language names."""
    check_instruction_rule(rule, "instruction")
    if rule == "official":
        return OFFICIAL_TRANSLATION_INSTRUCTIONS[0].format(
            src=official_language_name(src_lang), tgt=official_language_name(tgt_lang)
        )
    return TRANSLATION_INSTRUCTIONS[0].format(
        src=get_language(src_lang).name, tgt=get_language(tgt_lang).name
    )
