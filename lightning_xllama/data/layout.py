"""Where a data folder's files go: the layout ``prepare-demo`` writes and ``scaling sweep`` reads.

Real corpora can be put in one as well::

    {data}/instructions/en.json, {data}/instructions/{lang}.json
    {data}/parallel/en-{lang}/train.en, train.{lang}
    {data}/eval/translation/en-{lang}/test.en, test.{lang}
    {data}/eval/qa/{lang}.json
    {data}/pretraining.txt, {data}/lexicons.json      (the demo's own)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class DataLayout:
    """Paths in a data folder; parallel and test sets are prefixes (``PREFIX.en``, ``PREFIX.{lang}``)."""

    root: Path

    def __init__(self, root: Union[str, Path]):
        object.__setattr__(self, "root", Path(root))

    @property
    def pretraining(self) -> Path:
        return self.root / "pretraining.txt"

    @property
    def lexicons(self) -> Path:
        return self.root / "lexicons.json"

    def instructions(self, lang: str = "en") -> Path:
        """Alpaca records in ``lang`` (``en``: the English originals)."""
        return self.root / "instructions" / f"{lang}.json"

    def parallel_dir(self, lang: str) -> Path:
        return self.root / "parallel" / f"en-{lang}"

    def parallel(self, lang: str) -> Path:
        """Prefix of the English-``lang`` training pairs (``train.en``, ``train.{lang}``)."""
        return self.parallel_dir(lang) / "train"

    def translation_test_dir(self, lang: str) -> Path:
        return self.root / "eval" / "translation" / f"en-{lang}"

    def translation_test(self, lang: str) -> Path:
        """Prefix of the English-``lang`` test set (``test.en``, ``test.{lang}``)."""
        return self.translation_test_dir(lang) / "test"

    def qa(self, lang: str) -> Path:
        """SQuAD-style QA in ``lang``."""
        return self.root / "eval" / "qa" / f"{lang}.json"

    def required(self, lang: str, qa: bool = False) -> list[Path]:
        """Files a run on ``lang`` reads besides the parallel corpus (and QA with ``qa``)."""
        test = self.translation_test(lang)
        needed = [
            self.instructions("en"),
            self.instructions(lang),
            test.with_suffix(".en"),
            test.with_suffix(f".{lang}"),
        ]
        return needed + ([self.qa(lang)] if qa else [])
