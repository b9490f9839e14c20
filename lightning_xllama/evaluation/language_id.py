"""Which language a model answered in: language identification and the off-target rate.

The method's known failure is off-target output: asked in Chinese, the model answers in English.
:func:`off_target_rate` counts it with any :class:`LanguageIdentifier`: :class:`LangidIdentifier`
(py3langid, offline, for real languages) or :class:`SyntheticIdentifier` (by lexicon, for the
artificial languages of the offline world, which no real identifier knows).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, Mapping, Optional, Protocol

from lightning_xllama.languages import get_language


class LanguageIdentifier(Protocol):
    """Anything that names the language of a text, or says it cannot tell."""

    def identify(self, text: str) -> Optional[str]:
        """The language code of ``text``, or None when undetermined (empty, too short, unclear)."""
        ...


@lru_cache(maxsize=8)
def _langid_model(candidates: tuple[str, ...]):
    """A private py3langid identifier limited to ``candidates``; the global one stays as it is."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as PyLangid

    model = PyLangid.from_model_file(MODEL_FILE, norm_probs=True)
    unknown = sorted(set(candidates) - set(model.labels))
    if unknown:
        raise ValueError(
            f"py3langid does not know the language code(s) {unknown}; it knows "
            f"{sorted(model.labels)}. Use SyntheticIdentifier for synthetic languages"
        )
    model.set_languages(list(candidates))
    return model


class LangidIdentifier:
    """py3langid restricted to the languages that can occur (e.g. ``["en", "zh"]``).

    Unrestricted, py3langid picks among its 140 labels and calls short Chinese text ``wuu`` or Latin
    text ``sr``; restricted, it answers with one of the candidates. The registry's codes for real
    languages are ISO 639-1, as py3langid's are (``zh``, ``ar``, ``el``, ...). Texts with fewer
    than ``min_chars`` letters (digits, punctuation and spaces do not count) are undetermined: on
    them the model only guesses. The model (about 0.5 s to load) is shared by identifiers with
    the same candidates.
    """

    def __init__(self, candidates: list[str], min_chars: int = 4) -> None:
        if not candidates:
            raise ValueError("expected at least one candidate language, got none")
        self.candidates = sorted(set(candidates))
        self.min_chars = min_chars
        self._model = _langid_model(tuple(self.candidates))

    def identify(self, text: str) -> Optional[str]:
        if sum(char.isalpha() for char in text) < self.min_chars:
            return None
        language, _ = self._model.classify(text)
        return language


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


_WORD = re.compile(r"\w+")


class SyntheticIdentifier:
    """Identifies synthetic languages by their words, with their script to break ties.

    Built from each language's lexicon (``{code: words}``, as the synthetic generator provides
    it). Every word of the text votes for each lexicon it belongs to (cognates may be in several);
    the language with most votes wins. On a tie, the one tied language whose script matches the
    text's (:func:`script_of`) wins. Undetermined (None): fewer than ``min_words`` words, no known
    word, or a tie that the script does not settle. ``scripts`` defaults to each registered
    language's synthetic script.
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
    """Synthetic script of every code that the registry knows as a synthetic language."""
    scripts = {}
    for code in codes:
        try:
            language = get_language(code)
        except KeyError:
            continue
        if language.synthetic is not None:
            scripts[code] = language.synthetic.script
    return scripts


def off_target_rate(outputs: list[str], expected_lang: str, identifier: LanguageIdentifier) -> dict:
    """How many outputs are in another language than ``expected_lang``.

    Returns counts ``total``, ``on_target``, ``off_target``, ``undetermined`` and
    ``rate = off_target / total`` (0.0 for no outputs). Undetermined outputs (empty, too short,
    unclear) are not counted as off-target: they are reported apart, so a model that outputs
    nothing shows up there rather than inflating the rate.
    """
    languages = [identifier.identify(output) for output in outputs]
    undetermined = sum(language is None for language in languages)
    on_target = sum(language == expected_lang for language in languages)
    off_target = len(languages) - undetermined - on_target
    return {
        "total": len(languages),
        "on_target": on_target,
        "off_target": off_target,
        "undetermined": undetermined,
        "rate": off_target / len(languages) if languages else 0.0,
    }
