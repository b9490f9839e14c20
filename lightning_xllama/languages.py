"""The language registry: every language the package can train on or evaluate.

A :class:`Language` carries what the pipeline needs to know about a language: its codes in the
evaluation sets, its script, the words of a zero-shot QA prompt in it (:class:`QAPromptWords`)
and, for the artificial languages of the offline demo, the settings that generate it from English
(:class:`SyntheticSettings`). Add a language with :func:`register` from your own module and name
that module in a config (``data.init_args.language_modules: [my_pkg.langs]``) or import it first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Iterable, Literal, Optional

SCRIPTS = ("latin", "greek", "cyrillic")
"""Alphabets a synthetic language can be written in (letter-for-letter from Latin)."""


@dataclass(frozen=True)
class SyntheticSettings:
    """How an artificial language is derived from the synthetic English.

    The distance from English grows as cognates get rarer, the script moves away from Latin and
    the word order departs from English's subject-verb-object.
    """

    script: Literal["latin", "greek", "cyrillic"] = "latin"
    """Alphabet: letters are mapped one-for-one from the Latin spelling."""
    cognate_share: float = 0.5
    """Share of the vocabulary whose words are English words with small spelling changes."""
    word_order: Literal["SVO", "SOV"] = "SVO"
    """Clause order; ``SOV`` puts the verb last (verb-final)."""
    adjective_after_noun: bool = False
    """Whether adjectives follow their noun."""

    def __post_init__(self) -> None:
        if self.script not in SCRIPTS:
            raise ValueError(f"unknown script {self.script!r}; expected one of {SCRIPTS}")
        if not 0.0 <= self.cognate_share <= 1.0:
            raise ValueError(f"cognate_share must be in [0, 1], got {self.cognate_share}")
        if self.word_order not in ("SVO", "SOV"):
            raise ValueError(f"word_order must be 'SVO' or 'SOV', got {self.word_order!r}")


@dataclass(frozen=True)
class QAPromptWords:
    """The words of a zero-shot QA prompt in one language: QA is prompted in the target language.

    The defaults are English. Synthetic languages keep them: their lexicons only hold the words of
    the synthetic grammar, which has no word for "context" or "answer" (the demo prompts them with
    the question as the instruction instead, so the whole prompt is still in the target language).
    """

    instruction: str = "Answer the question using the context."
    """The instruction of the labelled QA prompt."""
    context: str = "Context"
    """Label in front of the passage."""
    question: str = "Question"
    """Label in front of the question."""
    answer: str = "Answer"
    """Label a model may put in front of its answer (removed when the answer is extracted)."""


@dataclass(frozen=True)
class Language:
    """One language: its code, name and the codes the evaluation sets use for it."""

    code: str
    """ISO 639-1 code for real languages (``zh``), a ``syn_`` name for synthetic ones."""
    name: str
    """English name, used in translation instructions ("from English to Chinese")."""
    script: str = "Latn"
    """ISO 15924 script code of the language's usual writing system."""
    flores101: Optional[str] = None
    """File code in FLORES-101 (``zho_simpl``)."""
    flores200: Optional[str] = None
    """File code in FLORES-200 (``zho_Hans``)."""
    synthetic: Optional[SyntheticSettings] = field(default=None, compare=False)
    """Generation settings when the language is artificial (the offline demo and tests)."""
    qa: QAPromptWords = QAPromptWords()
    """Words of the zero-shot QA prompt in this language."""

    @property
    def is_synthetic(self) -> bool:
        return self.synthetic is not None


_REGISTRY: dict[str, Language] = {}


def register(language: Language, *, overwrite: bool = False) -> Language:
    """Add ``language`` to the registry (or replace an entry with ``overwrite=True``)."""
    if language.code in _REGISTRY and not overwrite and _REGISTRY[language.code] != language:
        raise ValueError(
            f"language {language.code!r} is already registered as {_REGISTRY[language.code]}; "
            "pass overwrite=True to replace it"
        )
    _REGISTRY[language.code] = language
    return language


def get_language(code: str) -> Language:
    """The registered language for ``code``; an unknown code names the known ones."""
    try:
        return _REGISTRY[code]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(
            f"unknown language code {code!r}; known codes: {known}. "
            "Register new languages with lightning_xllama.languages.register()"
        ) from None


def known_languages() -> list[str]:
    return sorted(_REGISTRY)


def import_language_modules(modules: Iterable[str]) -> None:
    """Import the user's modules that :func:`register` languages (a data module's
    ``language_modules``), so a config can name a language the package does not ship."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(
                f"language module {name!r} could not be imported ({err}); it must be importable "
                "(on sys.path or installed) and call lightning_xllama.languages.register()"
            ) from err


for _lang in (
    Language("en", "English", "Latn", "eng", "eng_Latn", SyntheticSettings("latin", 1.0, "SVO")),
    Language(
        "ar",
        "Arabic",
        "Arab",
        "ara",
        "arb_Arab",
        qa=QAPromptWords("أجب عن السؤال بالاعتماد على السياق.", "السياق", "السؤال", "الإجابة"),
    ),
    Language(
        "el",
        "Greek",
        "Grek",
        "ell",
        "ell_Grek",
        qa=QAPromptWords(
            "Απάντησε στην ερώτηση με βάση το κείμενο.", "Κείμενο", "Ερώτηση", "Απάντηση"
        ),
    ),
    Language(
        "hi",
        "Hindi",
        "Deva",
        "hin",
        "hin_Deva",
        qa=QAPromptWords("संदर्भ के आधार पर प्रश्न का उत्तर दें।", "संदर्भ", "प्रश्न", "उत्तर"),
    ),
    Language(
        "tr",
        "Turkish",
        "Latn",
        "tur",
        "tur_Latn",
        qa=QAPromptWords("Soruyu metne dayanarak yanıtlayın.", "Metin", "Soru", "Cevap"),
    ),
    Language(
        "vi",
        "Vietnamese",
        "Latn",
        "vie",
        "vie_Latn",
        qa=QAPromptWords(
            "Trả lời câu hỏi dựa trên ngữ cảnh.", "Ngữ cảnh", "Câu hỏi", "Câu trả lời"
        ),
    ),
    Language(
        "zh",
        "Chinese",
        "Hans",
        "zho_simpl",
        "zho_Hans",
        qa=QAPromptWords("根据上下文回答问题。", "上下文", "问题", "答案"),
    ),
    Language(
        "de",
        "German",
        "Latn",
        "deu",
        "deu_Latn",
        qa=QAPromptWords(
            "Beantworte die Frage anhand des Kontexts.", "Kontext", "Frage", "Antwort"
        ),
    ),
    Language(
        "es",
        "Spanish",
        "Latn",
        "spa",
        "spa_Latn",
        qa=QAPromptWords(
            "Responde a la pregunta según el contexto.", "Contexto", "Pregunta", "Respuesta"
        ),
    ),
    Language(
        "ru",
        "Russian",
        "Cyrl",
        "rus",
        "rus_Cyrl",
        qa=QAPromptWords(
            "Ответьте на вопрос, опираясь на контекст.", "Контекст", "Вопрос", "Ответ"
        ),
    ),
    # The offline world: one language close to English, one distant from it.
    Language("syn_near", "Nearish", "Grek", synthetic=SyntheticSettings("greek", 0.6, "SVO")),
    Language(
        "syn_far",
        "Farish",
        "Cyrl",
        synthetic=SyntheticSettings("cyrillic", 0.0, "SOV", adjective_after_noun=True),
    ),
):
    register(_lang)
