"""The settings the demo world generates each artificial language from, by language code.

:func:`~lightning_xllama.demo.languages.register_synthetic` adds them as it registers a language;
:mod:`lightning_xllama.demo.world` reads them. They sit in a module of their own, below both, so
that the world need not import the plug-in that registers the languages (which imports the world
for the languages' identifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SCRIPTS = {"latin": "Latn", "greek": "Grek", "cyrillic": "Cyrl"}
"""Alphabets a synthetic language can be written in (letter-for-letter from Latin), with their
ISO 15924 codes (the registry's ``Language.script``)."""


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
            raise ValueError(f"unknown script {self.script!r}; expected one of {sorted(SCRIPTS)}")
        if not 0.0 <= self.cognate_share <= 1.0:
            raise ValueError(f"cognate_share must be in [0, 1], got {self.cognate_share}")
        if self.word_order not in ("SVO", "SOV"):
            raise ValueError(f"word_order must be 'SVO' or 'SOV', got {self.word_order!r}")


_SETTINGS: dict[str, SyntheticSettings] = {"en": SyntheticSettings("latin", 1.0, "SVO")}
"""Generation settings by language code; English is the language the others derive from."""


def synthetic_settings(code: str) -> SyntheticSettings:
    """The generation settings of the synthetic language ``code``; a language registered without
    them (every real language) is an error naming the ones that have them."""
    try:
        return _SETTINGS[code]
    except KeyError:
        raise ValueError(
            f"language {code!r} has no synthetic settings; the synthetic world can only generate "
            f"{sorted(_SETTINGS)} (add one with lightning_xllama.demo.languages.register_synthetic)"
        ) from None


def synthetic_languages() -> list[str]:
    """Codes of the registered synthetic languages, English (their common source) excluded."""
    return sorted(code for code in _SETTINGS if code != "en")


def set_synthetic_settings(code: str, settings: SyntheticSettings) -> None:
    """Keep ``settings`` as the generation settings of language ``code`` (replacing any)."""
    _SETTINGS[code] = settings
