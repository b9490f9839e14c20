"""The language registry: every language the package can train on or evaluate.

A :class:`Language` carries what the pipeline needs to know about a language: its codes in the
evaluation sets, its script and the words of a zero-shot QA prompt in it (:class:`QAPromptWords`).
The registry holds real languages; a plug-in adds its own (the offline demo's artificial languages
are registered by :mod:`lightning_xllama.demo.languages`). Every language of FLORES-101, XQuAD and MLQA is registered, so
every file of those benchmarks can be read; the QA languages (XQuAD's and MLQA's) have QA prompt
words of their own, the others prompt in English. Add a language with :func:`register` from your own
module and name that module in a config (``data.init_args.language_modules: [my_pkg.langs]``) or
import it first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class QAPromptWords:
    """The words of a zero-shot QA prompt in one language: QA is prompted in the target language.

    The defaults are English. A language without words of its own keeps them (the demo's artificial
    languages have no word for "context" or "answer": the demo prompts them with the question as
    the instruction instead, so the whole prompt is still in the target language).
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
    """ISO 639-1 code for real languages (``zh``), ISO 639-3 where there is none (``ast``), a
    plug-in's own code for languages it adds (the demo's ``syn_far``); Traditional Chinese is
    ``zh_Hant``."""
    name: str
    """English name, used in translation instructions ("from English to Chinese")."""
    script: str = "Latn"
    """ISO 15924 script code of the language's usual writing system (``Hans``, ``Arab``, ``Cyrl``):
    the off-target check compares an output's letters with it."""
    flores101: Optional[str] = None
    """File code in FLORES-101 (``zho_simpl``)."""
    flores200: Optional[str] = None
    """File code in FLORES-200 (``zho_Hans``)."""
    qa: QAPromptWords = QAPromptWords()
    """Words of the zero-shot QA prompt in this language."""


_REGISTRY: dict[str, Language] = {}
_GIVES_WAY: set[str] = set()
"""Shipped codes that a user's own registration replaces without ``overwrite=True``: the languages
that came with the full benchmark table, which user modules may have registered themselves."""


def register(language: Language, *, overwrite: bool = False) -> Language:
    """Add ``language`` to the registry (or replace an entry with ``overwrite=True``).

    A different entry for a registered code raises, except once for the languages that came with
    the full benchmark table: a user module that registered one of them before keeps working,
    and its entry replaces the shipped one.
    """
    current = _REGISTRY.get(language.code)
    if (
        current is not None
        and current != language
        and not overwrite
        and language.code not in _GIVES_WAY
    ):
        raise ValueError(
            f"language {language.code!r} is already registered as {current}; "
            "pass overwrite=True to replace it"
        )
    _GIVES_WAY.discard(language.code)
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


def language_for_flores(code: str) -> Language:
    """The registered language whose FLORES-101 (``zho_simpl``) or FLORES-200 (``zho_Hans``) file
    code is ``code``, to name a FLORES file's language by the registry's code."""
    for language in _REGISTRY.values():
        if code in (language.flores101, language.flores200):
            return language
    raise KeyError(
        f"no registered language has the FLORES-101 or FLORES-200 code {code!r}; register it "
        "with its codes (lightning_xllama.languages.register)"
    )


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


# fmt: off
_FLORES101 = (
    # registry code (ISO 639-1, else 639-3), English name, FLORES-101 code, FLORES-200 code;
    # the script is the FLORES-200 code's suffix (ISO 15924). FLORES-101's order (by name).
    ("af", "Afrikaans", "afr", "afr_Latn"),          ("am", "Amharic", "amh", "amh_Ethi"),
    ("ar", "Arabic", "ara", "arb_Arab"),             ("hy", "Armenian", "hye", "hye_Armn"),
    ("as", "Assamese", "asm", "asm_Beng"),           ("ast", "Asturian", "ast", "ast_Latn"),
    ("az", "Azerbaijani", "azj", "azj_Latn"),        ("be", "Belarusian", "bel", "bel_Cyrl"),
    ("bn", "Bengali", "ben", "ben_Beng"),            ("bs", "Bosnian", "bos", "bos_Latn"),
    ("bg", "Bulgarian", "bul", "bul_Cyrl"),          ("my", "Burmese", "mya", "mya_Mymr"),
    ("ca", "Catalan", "cat", "cat_Latn"),            ("ceb", "Cebuano", "ceb", "ceb_Latn"),
    ("zh", "Chinese", "zho_simpl", "zho_Hans"),
    ("zh_Hant", "Traditional Chinese", "zho_trad", "zho_Hant"),
    ("hr", "Croatian", "hrv", "hrv_Latn"),           ("cs", "Czech", "ces", "ces_Latn"),
    ("da", "Danish", "dan", "dan_Latn"),             ("nl", "Dutch", "nld", "nld_Latn"),
    ("en", "English", "eng", "eng_Latn"),            ("et", "Estonian", "est", "est_Latn"),
    ("tl", "Tagalog", "tgl", "tgl_Latn"),            ("fi", "Finnish", "fin", "fin_Latn"),
    ("fr", "French", "fra", "fra_Latn"),             ("ff", "Fula", "ful", "fuv_Latn"),
    ("gl", "Galician", "glg", "glg_Latn"),           ("lg", "Ganda", "lug", "lug_Latn"),
    ("ka", "Georgian", "kat", "kat_Geor"),           ("de", "German", "deu", "deu_Latn"),
    ("el", "Greek", "ell", "ell_Grek"),              ("gu", "Gujarati", "guj", "guj_Gujr"),
    ("ha", "Hausa", "hau", "hau_Latn"),              ("he", "Hebrew", "heb", "heb_Hebr"),
    ("hi", "Hindi", "hin", "hin_Deva"),              ("hu", "Hungarian", "hun", "hun_Latn"),
    ("is", "Icelandic", "isl", "isl_Latn"),          ("ig", "Igbo", "ibo", "ibo_Latn"),
    ("id", "Indonesian", "ind", "ind_Latn"),         ("ga", "Irish", "gle", "gle_Latn"),
    ("it", "Italian", "ita", "ita_Latn"),            ("ja", "Japanese", "jpn", "jpn_Jpan"),
    ("jv", "Javanese", "jav", "jav_Latn"),           ("kea", "Kabuverdianu", "kea", "kea_Latn"),
    ("kam", "Kamba", "kam", "kam_Latn"),             ("kn", "Kannada", "kan", "kan_Knda"),
    ("kk", "Kazakh", "kaz", "kaz_Cyrl"),             ("km", "Khmer", "khm", "khm_Khmr"),
    ("ko", "Korean", "kor", "kor_Hang"),             ("ky", "Kyrgyz", "kir", "kir_Cyrl"),
    ("lo", "Lao", "lao", "lao_Laoo"),                ("lv", "Latvian", "lav", "lvs_Latn"),
    ("ln", "Lingala", "lin", "lin_Latn"),            ("lt", "Lithuanian", "lit", "lit_Latn"),
    ("luo", "Luo", "luo", "luo_Latn"),               ("lb", "Luxembourgish", "ltz", "ltz_Latn"),
    ("mk", "Macedonian", "mkd", "mkd_Cyrl"),         ("ms", "Malay", "msa", "zsm_Latn"),
    ("ml", "Malayalam", "mal", "mal_Mlym"),          ("mt", "Maltese", "mlt", "mlt_Latn"),
    ("mi", "Maori", "mri", "mri_Latn"),              ("mr", "Marathi", "mar", "mar_Deva"),
    ("mn", "Mongolian", "mon", "khk_Cyrl"),          ("ne", "Nepali", "npi", "npi_Deva"),
    ("nso", "Northern Sotho", "nso", "nso_Latn"),    ("nb", "Norwegian", "nob", "nob_Latn"),
    ("ny", "Nyanja", "nya", "nya_Latn"),             ("oc", "Occitan", "oci", "oci_Latn"),
    ("or", "Oriya", "ory", "ory_Orya"),              ("om", "Oromo", "orm", "gaz_Latn"),
    ("ps", "Pashto", "pus", "pbt_Arab"),             ("fa", "Persian", "fas", "pes_Arab"),
    ("pl", "Polish", "pol", "pol_Latn"),             ("pt", "Portuguese", "por", "por_Latn"),
    ("pa", "Punjabi", "pan", "pan_Guru"),            ("ro", "Romanian", "ron", "ron_Latn"),
    ("ru", "Russian", "rus", "rus_Cyrl"),            ("sr", "Serbian", "srp", "srp_Cyrl"),
    ("sn", "Shona", "sna", "sna_Latn"),              ("sd", "Sindhi", "snd", "snd_Arab"),
    ("sk", "Slovak", "slk", "slk_Latn"),             ("sl", "Slovenian", "slv", "slv_Latn"),
    ("so", "Somali", "som", "som_Latn"),             ("ckb", "Sorani Kurdish", "ckb", "ckb_Arab"),
    ("es", "Spanish", "spa", "spa_Latn"),            ("sw", "Swahili", "swh", "swh_Latn"),
    ("sv", "Swedish", "swe", "swe_Latn"),            ("tg", "Tajik", "tgk", "tgk_Cyrl"),
    ("ta", "Tamil", "tam", "tam_Taml"),              ("te", "Telugu", "tel", "tel_Telu"),
    ("th", "Thai", "tha", "tha_Thai"),               ("tr", "Turkish", "tur", "tur_Latn"),
    ("uk", "Ukrainian", "ukr", "ukr_Cyrl"),          ("umb", "Umbundu", "umb", "umb_Latn"),
    ("ur", "Urdu", "urd", "urd_Arab"),               ("uz", "Uzbek", "uzb", "uzn_Latn"),
    ("vi", "Vietnamese", "vie", "vie_Latn"),         ("cy", "Welsh", "cym", "cym_Latn"),
    ("wo", "Wolof", "wol", "wol_Latn"),              ("xh", "Xhosa", "xho", "xho_Latn"),
    ("yo", "Yoruba", "yor", "yor_Latn"),             ("zu", "Zulu", "zul", "zul_Latn"),
)
# fmt: on

FLORES101_LANGUAGES = tuple(code for code, *_ in _FLORES101)
"""Registry codes of FLORES-101's languages (102 files: English, and Chinese twice)."""
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MLQA_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")

_QA_WORDS = {
    # instruction, then the labels of the passage, the question and the answer
    "ar": QAPromptWords("أجب عن السؤال بالاعتماد على السياق.", "السياق", "السؤال", "الإجابة"),
    "de": QAPromptWords("Beantworte die Frage anhand des Kontexts.", "Kontext", "Frage", "Antwort"),
    "el": QAPromptWords(
        "Απάντησε στην ερώτηση με βάση το κείμενο.", "Κείμενο", "Ερώτηση", "Απάντηση"
    ),
    "en": QAPromptWords(),
    "es": QAPromptWords(
        "Responde a la pregunta según el contexto.", "Contexto", "Pregunta", "Respuesta"
    ),
    "hi": QAPromptWords("संदर्भ के आधार पर प्रश्न का उत्तर दें।", "संदर्भ", "प्रश्न", "उत्तर"),
    "ro": QAPromptWords(
        "Răspunde la întrebare pe baza contextului.", "Context", "Întrebare", "Răspuns"
    ),
    "ru": QAPromptWords("Ответьте на вопрос, опираясь на контекст.", "Контекст", "Вопрос", "Ответ"),
    "th": QAPromptWords("ตอบคำถามโดยอ้างอิงจากบริบท", "บริบท", "คำถาม", "คำตอบ"),
    "tr": QAPromptWords("Soruyu metne dayanarak yanıtlayın.", "Metin", "Soru", "Cevap"),
    "vi": QAPromptWords("Trả lời câu hỏi dựa trên ngữ cảnh.", "Ngữ cảnh", "Câu hỏi", "Câu trả lời"),
    "zh": QAPromptWords("根据上下文回答问题。", "上下文", "问题", "答案"),
}

_FIRST_SHIPPED = {"en", "ar", "de", "el", "es", "hi", "ru", "tr", "vi", "zh"}
"""Shipped before the full table: a different registration of one of these still raises."""

for _code, _name, _flores101, _flores200 in _FLORES101:
    register(
        Language(
            _code,
            _name,
            _flores200.split("_")[1],
            _flores101,
            _flores200,
            _QA_WORDS.get(_code, QAPromptWords()),
        )
    )
    if _code not in _FIRST_SHIPPED:
        _GIVES_WAY.add(_code)
