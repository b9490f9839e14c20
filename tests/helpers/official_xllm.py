"""The official x-LLM code's constants the tests pin the package against, copied as published."""

from __future__ import annotations

# x-LLM data/translation/translation.py, _INSTRUCTIONS, copied as it is written there
OFFICIAL = [
    "Translate the following sentences from {source_lang} to {target_lang}.",
    "What do the following sentences mean in {target_lang}?",
    "Please provide the {target_lang} translation for the following sentences.",
    "Convert the subsequent sentences from {source_lang} into {target_lang}.",
    "Render the listed sentences in {target_lang} from their original {source_lang} form.",
    "Transform the upcoming sentences from {source_lang} language to {target_lang} language.",
    "Change the given sentences from {source_lang} to {target_lang} format.",
    "Turn the following sentences from their {source_lang} version to the {target_lang} version.",
    "Adapt the mentioned sentences from {source_lang} to the {target_lang} language.",
    "Transpose the next sentences from the {source_lang} format to the {target_lang} format.",
    "Switch the specified sentences from their {source_lang} form to {target_lang} form.",
    "Reinterpret the ensuing sentences from {source_lang} to {target_lang} language.",
    "Modify the forthcoming sentences, converting them from {source_lang} to {target_lang}.",
    "How can the subsequent sentences be interpreted in {target_lang}?",
    "What is the meaning of these sentences when translated to {target_lang}?",
    "In the context of {target_lang}, what do the upcoming sentences signify?",
    "How would you express the meaning of the following sentences in {target_lang}?",
    "What is the significance of the mentioned sentences in {target_lang}?",
    "In {target_lang}, what do the given sentences convey?",
    "When translated to {target_lang}, what message do these sentences carry?",
    "What is the intended meaning of the ensuing sentences in {target_lang}?",
    "How should the following sentences be comprehended in {target_lang}?",
    "In terms of {target_lang}, what do the next sentences imply?",
    "Kindly furnish the {target_lang} translation of the subsequent sentences.",
    "Could you supply the {target_lang} translation for the upcoming sentences?",
    "Please offer the {target_lang} rendition for the following statements.",
    "I'd appreciate it if you could present the {target_lang} translation for these sentences.",
    "Can you deliver the {target_lang} translation for the mentioned sentences?",
    "Please share the {target_lang} version of the given sentences.",
    "It would be helpful if you could provide the {target_lang} translation of the ensuing "
    "sentences.",
    "Kindly submit the {target_lang} interpretation for the next sentences.",
    "Please make available the {target_lang} translation for the listed sentences.",
    "Can you reveal the {target_lang} translation of the forthcoming sentences?",
]

# iso639.languages.get(alpha2=code).name, as translation.py names the languages
OFFICIAL_NAMES = {"en": "English", "zh": "Chinese", "el": "Modern Greek (1453-)"}
