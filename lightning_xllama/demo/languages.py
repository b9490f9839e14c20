"""The demo's artificial languages, a plug-in of the language registry.

Importing this module registers ``syn_near`` (Greek script, many cognates, English word order)
and ``syn_far`` (Cyrillic script, no cognates, verb-final) with the core registry's public
:func:`~lightning_xllama.languages.register`, keeps the settings the synthetic world generates
them from (:class:`SyntheticSettings`, in :mod:`lightning_xllama.demo.settings` and not in the
registry), and tells the rest of the package what it needs to handle them: a lexicon identifier
for the off-target rate (no real identifier knows them) and a note for the LLM judge. A config
loads it as any user's language module: ``data.init_args.language_modules:
[lightning_xllama.demo.languages]``. Add your own artificial language with
:func:`register_synthetic`.
"""

from __future__ import annotations

from lightning_xllama.demo.settings import (
    SCRIPTS,
    SyntheticSettings,
    set_synthetic_settings,
    synthetic_languages,
    synthetic_settings,
)
from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.evaluation.judge import register_language_note
from lightning_xllama.evaluation.language_id import SyntheticIdentifier, register_identifier
from lightning_xllama.languages import Language, register

__all__ = [
    "SCRIPTS",
    "SyntheticSettings",
    "identify_synthetic",
    "register_synthetic",
    "synthetic_languages",
    "synthetic_settings",
]


def identify_synthetic(candidates: list[str]) -> SyntheticIdentifier:
    """The off-target rate's identifier for synthetic languages: their lexicons (and English's)."""
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
    set_synthetic_settings(language.code, settings)
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
