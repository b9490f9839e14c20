"""Which language a model answered in: language identification and the off-target rate.

The method's known failure is off-target output: asked in Chinese, the model answers in English
(or in a third language). :func:`off_target_rate` counts it with any :class:`LanguageIdentifier`:
:class:`LangidIdentifier` (py3langid, offline, for real languages) or one a language plug-in
registers for the languages it adds (:func:`register_identifier`; the demo's artificial languages
use a :class:`SyntheticIdentifier`, by lexicon, since no real identifier knows them), and checks the script of the output's letters against the target's, so an answer in another
alphabet is off target whatever the identifier says (:func:`script_counts`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Callable, Iterable, Mapping, Optional, Protocol

from lightning_xllama.languages import get_language


class LanguageIdentifier(Protocol):
    """Anything that names the language of a text, or says it cannot tell."""

    def identify(self, text: str) -> Optional[str]:
        """The language code of ``text``, or None when undetermined (empty, too short, unclear)."""
        ...


IdentifierFactory = Callable[[list[str]], "LanguageIdentifier"]
"""Builds an identifier that tells the candidate language codes it is given apart."""

_IDENTIFIERS: dict[str, IdentifierFactory] = {}


def register_identifier(code: str, factory: IdentifierFactory) -> None:
    """Identify language ``code`` with ``factory``'s identifier rather than py3langid: for a
    language py3langid does not know (or knows badly). Languages registered with the same factory
    are candidates of one identifier (see :func:`~lightning_xllama.evaluation.off_target.
    build_identifier`); a later registration of ``code`` replaces the earlier one."""
    _IDENTIFIERS[code] = factory


def registered_identifier(code: str) -> Optional[IdentifierFactory]:
    """The factory registered for ``code`` with :func:`register_identifier`; None: py3langid."""
    return _IDENTIFIERS.get(code)


def codes_identified_by(factory: IdentifierFactory) -> list[str]:
    """Codes registered with ``factory``, in registration order."""
    return [code for code, registered in _IDENTIFIERS.items() if registered is factory]


LANGID_LABELS = {"nb": "no", "ff": "fuv", "zh_Hant": "zh"}
"""Registry codes that py3langid knows under another label (it has one label for both Chinese
scripts)."""


def langid_label(code: str) -> str:
    """py3langid's label for a registry code."""
    return LANGID_LABELS.get(code, code)


@lru_cache(maxsize=1)
def langid_labels() -> frozenset[str]:
    """Every label py3langid knows."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as PyLangid

    return frozenset(PyLangid.from_model_file(MODEL_FILE).labels)


@lru_cache(maxsize=8)
def _langid_model(labels: tuple[str, ...]):
    """A private py3langid identifier limited to ``labels``; the global one stays as it is."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as PyLangid

    model = PyLangid.from_model_file(MODEL_FILE, norm_probs=True)
    model.set_languages(list(labels))
    return model


class LangidIdentifier:
    """py3langid restricted to the languages that can occur (e.g. ``["en", "zh"]``).

    Unrestricted, py3langid picks among its 140 labels and calls short Chinese text ``wuu`` or Latin
    text ``sr``; restricted, it answers with one of the candidates. The registry's codes for real
    languages are ISO 639-1, as py3langid's are (``zh``, ``ar``, ``el``, ...); the few it spells
    otherwise are translated (:data:`LANGID_LABELS`). Candidates sharing a label (``zh`` and
    ``zh_Hant``) cannot be told apart: the label names the first of them in ``candidates``.
    Texts with fewer than ``min_chars`` letters (digits, punctuation and spaces do not count) are
    undetermined: on them the model only guesses. The model (about 0.5 s to load) is shared by
    identifiers with the same candidates.
    """

    def __init__(self, candidates: list[str], min_chars: int = 4) -> None:
        if not candidates:
            raise ValueError("expected at least one candidate language, got none")
        self.candidates = list(dict.fromkeys(candidates))
        self.min_chars = min_chars
        unknown = [code for code in self.candidates if langid_label(code) not in langid_labels()]
        if unknown:
            raise ValueError(
                f"py3langid does not know the language code(s) {sorted(unknown)}; it knows "
                f"{sorted(langid_labels())}. A language plug-in can register an identifier for "
                "the languages it adds (lightning_xllama.evaluation.language_id.register_identifier)"
            )
        self._codes: dict[str, str] = {}
        for code in self.candidates:
            self._codes.setdefault(langid_label(code), code)
        self._model = _langid_model(tuple(sorted(self._codes)))

    def identify(self, text: str) -> Optional[str]:
        if sum(char.isalpha() for char in text) < self.min_chars:
            return None
        label, _ = self._model.classify(text)
        return self._codes[label]


_SCRIPT_RANGES = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)),
    "greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "cyrillic": ((0x400, 0x52F),),
}


def _char_script(char: str) -> str:
    point = ord(char)
    for script, ranges in _SCRIPT_RANGES.items():
        if any(low <= point <= high for low, high in ranges):
            return script
    return "other"


def script_of(text: str) -> str:
    """The script most letters of ``text`` are written in: latin, greek, cyrillic or other.

    Text without letters is ``other``.
    """
    counts = Counter(_char_script(char) for char in text if char.isalpha())
    return counts.most_common(1)[0][0] if counts else "other"


# --- the script of an output's letters (ISO 15924, as the registry's ``Language.script``) -----
# fmt: off
_UNICODE_SCRIPTS = {
    # first word of a letter's Unicode name -> ISO 15924 code
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARMENIAN": "Armn", "GEORGIAN": "Geor",
    "ARABIC": "Arab", "HEBREW": "Hebr", "ETHIOPIC": "Ethi", "DEVANAGARI": "Deva",
    "BENGALI": "Beng", "GURMUKHI": "Guru", "GUJARATI": "Gujr", "ORIYA": "Orya", "TAMIL": "Taml",
    "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh", "THAI": "Thai",
    "LAO": "Laoo", "MYANMAR": "Mymr", "KHMER": "Khmr", "TIBETAN": "Tibt", "HANGUL": "Hang",
    "HIRAGANA": "Hira", "KATAKANA": "Kana", "KATAKANA-HIRAGANA": "Kana", "CJK": "Hani",
    "IDEOGRAPHIC": "Hani",
}
_WRITTEN_WITH = {
    # a language's script code -> the Unicode scripts its text is written with
    "Hans": {"Hani"}, "Hant": {"Hani"}, "Jpan": {"Hani", "Hira", "Kana"}, "Kore": {"Hang", "Hani"},
}
# fmt: on
_ONE_WORD_A_CHARACTER = {"Hani", "Hira", "Kana"}
"""Scripts written without spaces between words: each character counts as a word."""
_SCRIPT_NAMES = {"Latn": "latin", "Grek": "greek", "Cyrl": "cyrillic"}
"""ISO 15924 codes of the scripts :func:`script_of` names."""


def letter_script(char: str) -> Optional[str]:
    """The ISO 15924 code of a letter's script (``Latn``, ``Hani``, ...); None when unknown."""
    words = unicodedata.name(char, "").split()
    while words and words[0] in ("FULLWIDTH", "HALFWIDTH"):
        words = words[1:]
    return _UNICODE_SCRIPTS.get(words[0]) if words else None


def script_counts(text: str) -> Counter:
    """How many words of ``text`` each script writes (ISO 15924 codes; None: unknown script).

    Words, not letters: a run of letters in one script is one word and each Han or kana character
    one too, so a Chinese sentence with an English name is still mostly Chinese. Combining marks
    (Indic vowel signs) continue the word they are in.
    """
    counts: Counter = Counter()
    previous = None
    for char in text:
        if char.isalpha():
            script = letter_script(char)
            if script != previous or script in _ONE_WORD_A_CHARACTER:
                counts[script] += 1
            previous = script
        elif not unicodedata.category(char).startswith("M"):
            previous = None
    return counts


def language_scripts(code: str) -> Optional[set[str]]:
    """The Unicode scripts a registered language is written with; None when the registry does not
    know the language or its script is not one :func:`letter_script` tells (no check is made)."""
    try:
        language = get_language(code)
    except KeyError:
        return None
    scripts = _WRITTEN_WITH.get(language.script, {language.script})
    return scripts if scripts <= set(_UNICODE_SCRIPTS.values()) else None


def written_in(text: str, code: str, min_share: float = 1 / 3) -> Optional[bool]:
    """Whether at least ``min_share`` of the words of ``text`` are in the script of language
    ``code``; None when either cannot be told (no letters, a script the check does not know).

    A third, not a half: a correct sentence can be mostly foreign names (FLORES has a Chinese one
    with 9 Han characters and 10 Latin words), while an answer in another script has next to none.
    """
    scripts = language_scripts(code)
    counts = script_counts(text)
    if scripts is None or not counts:
        return None
    return sum(counts[script] for script in scripts) >= min_share * sum(counts.values())


_WORD = re.compile(r"\w+")


class SyntheticIdentifier:
    """Identifies languages by their words, with their script to break ties: for languages no
    statistical identifier knows, such as the demo's artificial ones.

    Built from each language's lexicon (``{code: words}``, as the demo's generator provides it). Every word of the text votes for each lexicon it belongs to (cognates may be in several);
    the language with most votes wins. On a tie, the one tied language whose script matches the
    text's (:func:`script_of`) wins. Undetermined (None): fewer than ``min_words`` words, no known
    word, or a tie that the script does not settle. ``scripts`` (``latin``, ``greek`` or
    ``cyrillic``, as :func:`script_of` names them) defaults to each registered language's
    ``script``.
    """

    def __init__(
        self,
        lexicons: Mapping[str, Iterable[str]],
        scripts: Optional[Mapping[str, str]] = None,
        min_words: int = 2,
    ) -> None:
        if not lexicons:
            raise ValueError("expected a lexicon for at least one language, got none")
        self.lexicons = {code: {word.lower() for word in words} for code, words in lexicons.items()}
        self.scripts = dict(scripts) if scripts is not None else _registered_scripts(self.lexicons)
        self.min_words = min_words

    def identify(self, text: str) -> Optional[str]:
        words = _WORD.findall(text.lower())
        if len(words) < self.min_words:
            return None
        votes = {code: sum(w in lexicon for w in words) for code, lexicon in self.lexicons.items()}
        best = max(votes.values())
        if best == 0:
            return None
        leaders = [code for code, count in votes.items() if count == best]
        if len(leaders) > 1:
            script = script_of(text)
            leaders = [code for code in leaders if self.scripts.get(code) == script]
        return leaders[0] if len(leaders) == 1 else None


def _registered_scripts(codes: Iterable[str]) -> dict[str, str]:
    """The :func:`script_of` name of each registered code's script (codes the registry does not
    know, or written in another script, are left out)."""
    scripts = {}
    for code in codes:
        try:
            script = _SCRIPT_NAMES.get(get_language(code).script)
        except KeyError:
            continue
        if script is not None:
            scripts[code] = script
    return scripts


def off_target_rate(
    outputs: list[str],
    expected_lang: str,
    identifier: LanguageIdentifier,
    min_script_share: float = 1 / 3,
) -> dict:
    """How many outputs are in another language than ``expected_lang``.

    Returns counts ``total``, ``on_target``, ``off_target``, ``undetermined`` and
    ``rate = off_target / total`` (0.0 for no outputs). Undetermined outputs (empty, too short,
    unclear) are not counted as off-target: they are reported apart, so a model that outputs
    nothing shows up there rather than inflating the rate.

    An output is judged by its letters first: fewer than ``min_script_share`` of its words (a
    third) in the target language's script (the registry's ``Language.script``) is off target
    whatever the identifier says, so Cyrillic output for a Chinese target counts even when the
    identifier only knows English and Chinese. In the target's script, the identifier decides,
    unless the language it names is not written in the output's script (a short Chinese answer
    called Icelandic): that is a guess, and the letters win. ``min_script_share=0`` leaves
    everything to the identifier.
    """
    verdicts = Counter(
        on_target(output, expected_lang, identifier, min_script_share) for output in outputs
    )
    total = len(outputs)
    return {
        "total": total,
        "on_target": verdicts[True],
        "off_target": verdicts[False],
        "undetermined": verdicts[None],
        "rate": verdicts[False] / total if total else 0.0,
    }


def on_target(
    output: str,
    expected_lang: str,
    identifier: LanguageIdentifier,
    min_script_share: float = 1 / 3,
) -> Optional[bool]:
    """Whether one output is in ``expected_lang`` (None: undetermined), as
    :func:`off_target_rate` counts it; for per-output records that agree with the rate."""
    language = identifier.identify(output)
    if language is None:
        return None
    if not min_script_share:
        return language == expected_lang
    in_target_script = written_in(output, expected_lang, min_script_share)
    if in_target_script is False:
        return False
    if language == expected_lang:
        return True
    guess_fits_letters = written_in(output, language, min_script_share) is not False
    return not guess_fits_letters and in_target_script is True
