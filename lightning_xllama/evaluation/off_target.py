"""The off-target rate of the generation callbacks: outputs not in the language asked for.

Answering in English to a non-English request is the method's known failure, so every generation
callback (translation, QA) measures it on its own outputs and logs it per task and language. This
module picks the language identifier and counts across ranks.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torchmetrics import Metric

from lightning_xllama.evaluation.language_id import (
    LangidIdentifier,
    LanguageIdentifier,
    codes_identified_by,
    langid_label,
    langid_labels,
    off_target_rate,
    registered_identifier,
)
from lightning_xllama.languages import get_language, known_languages


def build_identifier(
    languages: Iterable[str], candidates: Optional[list[str]] = None
) -> LanguageIdentifier:
    """A language identifier able to tell ``languages`` from English and every other language.

    Real languages get py3langid restricted to ``candidates`` (default: ``languages``, English and
    every other registered real language py3langid knows, so an answer in a third language is
    named as such rather than as the nearest of the pair). Languages a plug-in registered an
    identifier for (:func:`~lightning_xllama.evaluation.language_id.register_identifier`, as the
    demo does for its artificial languages) get that identifier (default candidates: English and
    every language registered with it, so an answer in the wrong one of them counts as off-target
    too). English follows the others; one callback cannot mix two identifiers. Whatever the
    identifier, the off-target rate also checks the script of each output against the target's
    (see :func:`~lightning_xllama.evaluation.language_id.off_target_rate`).
    """
    languages = sorted(set(languages))
    others = [code for code in languages if code != "en"]
    for code in others:
        get_language(code)  # an unknown code fails here, listing the known ones
    factories = {code: registered_identifier(code) for code in others}
    groups: dict = {}
    for code, factory in factories.items():
        groups.setdefault(factory, []).append(code)
    if len(groups) > 1:
        described = [
            f"{codes} ({'py3langid' if factory is None else 'their registered identifier'})"
            for factory, codes in groups.items()
        ]
        raise ValueError(
            f"cannot identify languages {' and '.join(described)} with one identifier; evaluate "
            "them in separate callbacks"
        )
    factory = next(iter(groups), None)
    if factory is None:
        return LangidIdentifier(candidates or real_candidates(languages))
    codes = candidates or ["en", *(c for c in codes_identified_by(factory) if c != "en")]
    return factory(list(codes))


def real_candidates(languages: Iterable[str]) -> list[str]:
    """``languages``, English, then every registered real language py3langid knows.

    The evaluated languages come first: a py3langid label shared by two registry codes (``zh``
    for ``zh`` and ``zh_Hant``) names the evaluated one. Two evaluated languages sharing a label
    cannot be told apart, which is an error.
    """
    first = list(dict.fromkeys([*languages, "en"]))
    labels: dict[str, str] = {}
    for code in first:
        other = labels.setdefault(langid_label(code), code)
        if other != code:
            raise ValueError(
                f"py3langid cannot tell {other!r} from {code!r} (both are "
                f"{langid_label(code)!r}); evaluate them in separate callbacks"
            )
    known = [
        code
        for code in known_languages()
        if registered_identifier(code) is None and langid_label(code) in langid_labels()
    ]
    return list(dict.fromkeys([*first, *known]))


class OffTargetRate(Metric):
    """Counts of outputs on target, off target and undetermined; the counts add up across ranks.

    ``compute()`` gives ``off_target`` and ``undetermined`` as percentages of all outputs (see
    :func:`~lightning_xllama.evaluation.language_id.off_target_rate` for what counts as which).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, identifier: LanguageIdentifier, expected_lang: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.identifier, self.expected_lang = identifier, expected_lang
        for name in ("off_target", "undetermined", "total"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, outputs: Sequence[str]) -> None:
        counts = off_target_rate(list(outputs), self.expected_lang, self.identifier)
        self.off_target += counts["off_target"]
        self.undetermined += counts["undetermined"]
        self.total += counts["total"]

    def compute(self) -> dict[str, float]:
        total = max(int(self.total), 1)
        return {
            "off_target": 100.0 * int(self.off_target) / total,
            "undetermined": 100.0 * int(self.undetermined) / total,
        }
