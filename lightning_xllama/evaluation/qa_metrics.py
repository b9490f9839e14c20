"""Question-answering scores: the paper's match, and exact match, F1 and "contains" under the MLQA
or the SQuAD rules.

The paper (Zhu et al., 2023) scored XQuAD and MLQA with its own check (x-LLM
``eval/xquad.match.py``, also run for MLQA): a generated answer is right when the gold answer,
lower-cased, is a substring of the whole lower-cased generated text. :func:`paper_match` is that
check, on the whole output (not an extracted first line), with no other normalisation.

Two official rule sets decide how answers are normalised before they are compared:

- ``"mlqa"`` mirrors MLQA's ``mlqa_evaluation_v1.py``: lower-case; drop every Unicode
  punctuation character (categories P*) and ASCII punctuation; drop articles per language (a
  word-boundary regex for en, es, de, vi; for ar the script replaces every "ال" with a space,
  wherever it occurs, also inside words); split on whitespace, except zh, where each CJK
  character (U+4E00-U+9FA5) is a token of its own and runs of other characters stay whole words.
  The official script refuses other languages; here they are treated like hi: no articles,
  whitespace tokens.
- ``"squad"`` mirrors SQuAD v1.1's ``evaluate-v1.1.py``, which is how XQuAD is officially scored:
  lower-case, drop ASCII punctuation only, drop English articles, whitespace tokens, whatever the
  language.

EM and F1 take the maximum over the gold answers. :func:`contains` is a stricter reading of the
paper's check: a normalised gold answer as a run of whole normalised tokens of the prediction.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Literal, Optional, Sequence, Union

import torch
from torchmetrics import Metric

Rules = Literal["mlqa", "squad"]
RULES: tuple[str, ...] = ("mlqa", "squad")

Golds = Union[str, Sequence[str]]
"""One gold answer or several (the score is the best over them)."""

_ASCII_PUNCTUATION = frozenset(string.punctuation)

MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
}
"""Article patterns of the official MLQA script (word boundaries; Arabic is handled apart)."""

_SQUAD_ARTICLES = MLQA_ARTICLES["en"]
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_MIXED_SEGMENTATION_LANGS = ("zh",)


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA's zh tokens: every CJK character alone, whitespace-split runs of everything else."""
    tokens: list[str] = []
    run = ""
    for char in text:
        if _CJK.match(char) or _is_punctuation(char):
            tokens.extend(run.split())
            run = ""
            tokens.append(char)
        else:
            run += char
    tokens.extend(run.split())
    return tokens


def normalize_mlqa(text: str, lang: str) -> str:
    """``text`` normalised by the official MLQA rules for ``lang``; tokens joined by spaces."""
    text = "".join(char for char in text.lower() if not _is_punctuation(char))
    if lang == "ar":
        text = text.replace("ال", " ")
    elif lang in MLQA_ARTICLES:
        text = MLQA_ARTICLES[lang].sub(" ", text)
    tokens = _mixed_segmentation(text) if lang in _MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(token for token in tokens if token.strip())


def normalize_squad(text: str) -> str:
    """``text`` normalised by the SQuAD v1.1 rules (English articles, ASCII punctuation only)."""
    text = "".join(char for char in text.lower() if char not in _ASCII_PUNCTUATION)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def normalize_answer(text: str, lang: str, rules: Rules = "mlqa") -> str:
    """``text`` normalised by the named rule set (``lang`` only matters for ``"mlqa"``)."""
    if rules == "mlqa":
        return normalize_mlqa(text, lang)
    if rules == "squad":
        return normalize_squad(text)
    raise ValueError(f"unknown QA rules {rules!r}; expected one of {RULES}")


def _as_list(golds: Golds) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("expected at least one gold answer, got none")
    return golds


def _tokens(text: str, lang: str, rules: Rules) -> list[str]:
    return normalize_answer(text, lang, rules).split()


def _f1_tokens(prediction: list[str], gold: list[str]) -> float:
    common = sum((Counter(prediction) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision = common / len(prediction)
    recall = common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _contains_tokens(prediction: list[str], gold: list[str]) -> bool:
    """Whether ``gold`` occurs as a contiguous run of whole tokens in ``prediction``."""
    if not gold:
        return False
    width = len(gold)
    return any(prediction[i : i + width] == gold for i in range(len(prediction) - width + 1))


def exact_match(prediction: str, golds: Golds, lang: str, rules: Rules = "mlqa") -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    predicted = normalize_answer(prediction, lang, rules)
    return float(any(predicted == normalize_answer(gold, lang, rules) for gold in _as_list(golds)))


def f1(prediction: str, golds: Golds, lang: str, rules: Rules = "mlqa") -> float:
    """Best token-bag F1 (0-1) of the prediction against the gold answers."""
    predicted = _tokens(prediction, lang, rules)
    return max(_f1_tokens(predicted, _tokens(gold, lang, rules)) for gold in _as_list(golds))


def contains(prediction: str, golds: Golds, lang: str, rules: Rules = "mlqa") -> float:
    """1.0 when a normalised gold answer appears in the normalised prediction, else 0.0.

    The paper's score for generated answers, which are often whole sentences. Matching is on
    whole tokens (for zh, every CJK character is a token), so the gold "10" is not found in
    "1000"; a gold answer that normalises to nothing is never found.
    """
    predicted = _tokens(prediction, lang, rules)
    golds = _as_list(golds)
    return float(any(_contains_tokens(predicted, _tokens(gold, lang, rules)) for gold in golds))


def paper_match(output: str, golds: Golds) -> float:
    """1.0 when a gold answer (stripped, lower-cased) is a substring of the lower-cased ``output``.

    The paper's QA score (x-LLM ``eval/xquad.match.py``: ``output.lower() in prediction.lower()``):
    ``output`` is the whole generated text, so an answer inside a sentence counts ("答案是北京。"
    for "北京"), and so does one inside a longer word ("1000" for "10"). The official script checks
    the first gold answer only; this checks each (XQuAD and MLQA have one per question, so the
    scores are the same). As in the official script, a gold answer that is empty after stripping
    is found in every output.
    """
    text = output.lower()
    return float(any(gold.strip().lower() in text for gold in _as_list(golds)))


def extract_answer(generated: str, prompt: Optional[str] = None) -> str:
    """The answer in a model's generated text: its first non-empty line, stripped.

    Decoder-only models often echo the prompt and keep going after the answer (a new question, an
    explanation). When ``generated`` starts with ``prompt``, the echo is removed first; the answer
    is then the first line with any non-whitespace text, or "" when there is none.
    """
    if prompt and generated.startswith(prompt):
        generated = generated[len(prompt) :]
    for line in generated.splitlines():
        if line.strip():
            return line.strip()
    return ""


class QAScores(Metric):
    """Exact match, F1 and contains over a data set, as percentages; syncs across DDP ranks.

    The state is four sums (EM, F1, contains, count) reduced by addition, so every rank scores
    its own share of the questions and ``compute()`` gives the scores over all of them.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, rules: Rules = "mlqa", lang: str = "en", **kwargs) -> None:
        super().__init__(**kwargs)
        if rules not in RULES:
            raise ValueError(f"unknown QA rules {rules!r}; expected one of {RULES}")
        self.rules = rules
        self.lang = lang
        for name in ("exact_match", "f1", "contains"):
            zero = torch.tensor(0.0, dtype=torch.float64)
            self.add_state(name, default=zero, dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], golds: Sequence[Golds]) -> None:
        """Add a batch: one prediction (already extracted) and its gold answer(s) per question."""
        if len(predictions) != len(golds):
            raise ValueError(
                f"expected one set of gold answers per prediction, got {len(predictions)} "
                f"predictions and {len(golds)} gold sets"
            )
        for prediction, gold in zip(predictions, golds):
            self.exact_match += exact_match(prediction, gold, self.lang, self.rules)
            self.f1 += f1(prediction, gold, self.lang, self.rules)
            self.contains += contains(prediction, gold, self.lang, self.rules)
        self.count += len(predictions)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"exact_match", "f1", "contains"}`` in percent (0-100), plus ``"count"``."""
        total = self.count.clamp(min=1).double()
        return {
            "exact_match": 100.0 * self.exact_match / total,
            "f1": 100.0 * self.f1 / total,
            "contains": 100.0 * self.contains / total,
            "count": self.count,
        }


class PaperMatch(Metric):
    """:func:`paper_match` over a data set, as a percentage; syncs across DDP ranks (two sums)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        zero = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("matches", default=zero, dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, outputs: Sequence[str], golds: Sequence[Golds]) -> None:
        """Add a batch: one whole generated text and its gold answer(s) per question."""
        if len(outputs) != len(golds):
            raise ValueError(
                f"expected one set of gold answers per output, got {len(outputs)} outputs and "
                f"{len(golds)} gold sets"
            )
        for output, gold in zip(outputs, golds):
            self.matches += paper_match(output, gold)
        self.count += len(outputs)

    def compute(self) -> torch.Tensor:
        """The share of outputs that match, in percent (0-100)."""
        return 100.0 * self.matches / self.count.clamp(min=1).double()
