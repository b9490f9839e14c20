"""The demo's artificial languages, a plug-in of the language registry.

Importing this module registers ``syn_near`` (Greek script, many cognates, English word order)
and ``syn_far`` (Cyrillic script, no cognates, verb-final) with the core registry's public
:func:`~lightning_xllama.languages.register`, keeps the settings the synthetic world generates
them from (:class:`SyntheticSettings`, here and not in the registry), and tells the rest of the
package what it needs to handle them: a lexicon identifier for the off-target rate (no real
identifier knows them) and a note for the LLM judge. A config loads it as any user's language
module: ``data.init_args.language_modules: [lightning_xllama.demo.languages]``. Add your own
artificial language with :func:`register_synthetic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lightning_xllama.evaluation.judge import register_language_note
from lightning_xllama.evaluation.language_id import SyntheticIdentifier, register_identifier
from lightning_xllama.languages import Language, register

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


def identify_synthetic(candidates: list[str]) -> SyntheticIdentifier:
    """The off-target rate's identifier for synthetic languages: their lexicons (and English's)."""
    from lightning_xllama.demo.world import SyntheticWorld

    return SyntheticIdentifier(SyntheticWorld([c for c in candidates if c != "en"]).lexicons())


def register_synthetic(
    language: Language, settings: SyntheticSettings, *, overwrite: bool = False
) -> Language:
    """Register an artificial language: in the core registry (its ``script`` must be the ISO
    15924 code of ``settings.script``), with the settings the synthetic world generates it from,
    the lexicon identifier and a note for the judge."""
    if language.script != SCRIPTS[settings.script]:
        raise ValueError(
            f"language {language.code!r} is written in {language.script!r} but its synthetic "
            f"settings use the {settings.script} alphabet ({SCRIPTS[settings.script]!r})"
        )
    register(language, overwrite=overwrite)
    _SETTINGS[language.code] = settings
    register_identifier(language.code, identify_synthetic)
    register_language_note(
        language.code,
        f"{language.name} is an artificial language written in the {settings.script} alphabet; "
        "an answer in English or in another alphabet counts as another language.",
    )
    return language


# The offline world: one language close to English, one distant from it.
register_synthetic(Language("syn_near", "Nearish", "Grek"), SyntheticSettings("greek", 0.6, "SVO"))
register_synthetic(
    Language("syn_far", "Farish", "Cyrl"),
    SyntheticSettings("cyrillic", 0.0, "SOV", adjective_after_noun=True),
)
