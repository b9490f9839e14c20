"""The off-target rate of the generation callbacks: outputs not in the language asked for.

Answering in English to a non-English request is the method's known failure, so every generation
callback (translation, QA) measures it on its own outputs and logs it per task and language. This
module picks the language identifier and counts across ranks.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torchmetrics import Metric

from lightning_xllama.demo.world import SyntheticWorld
from lightning_xllama.evaluation.language_id import (
    LangidIdentifier,
    LanguageIdentifier,
    SyntheticIdentifier,
    off_target_rate,
)
from lightning_xllama.languages import get_language, known_languages


def build_identifier(
    languages: Iterable[str], candidates: Optional[list[str]] = None
) -> LanguageIdentifier:
    """A language identifier able to tell ``languages`` (and English) apart.

    Real languages get py3langid restricted to ``candidates`` (default: English and
    ``languages``). Synthetic languages get an identifier built from the lexicons of the synthetic
    world, derived from the registry (default candidates: English and every registered synthetic
    language, so an answer in the wrong synthetic language counts as off-target too). English
    belongs to both worlds and follows the others; one callback cannot mix the two worlds.
    """
    languages = sorted(set(languages))
    others = [code for code in languages if code != "en"]
    synthetic = [code for code in others if get_language(code).is_synthetic]
    if synthetic and len(synthetic) != len(others):
        real = sorted(set(others) - set(synthetic))
        raise ValueError(
            f"cannot identify synthetic languages {synthetic} and real languages {real} with one "
            "identifier; evaluate them in separate callbacks"
        )
    if not synthetic:
        return LangidIdentifier(candidates or sorted({"en", *languages}))
    codes = candidates or [
        "en",
        *(c for c in known_languages() if c != "en" and get_language(c).is_synthetic),
    ]
    return SyntheticIdentifier(SyntheticWorld([c for c in codes if c != "en"]).lexicons())


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
