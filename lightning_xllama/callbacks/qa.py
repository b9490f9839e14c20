"""Zero-shot extractive QA measured during training: XQuAD, MLQA and your own SQuAD-format files,
prompted in the target language, scored under the MLQA and the SQuAD v1.1 rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lightning_xllama import distributed
from lightning_xllama.callbacks.base import (
    EvaluationResult,
    GenerationEvaluation,
    GenerationSettings,
)
from lightning_xllama.data.eval_sets import MLQASplit, QAExample, mlqa_file, read_squad, xquad_file
from lightning_xllama.evaluation.qa_metrics import RULES, QAScores, Rules, extract_answer
from lightning_xllama.evaluation.test_sets import evenly_spaced
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import alpaca_prompt

PromptStyle = Literal["labelled", "question"]


def qa_prompt(example: QAExample, style: PromptStyle = "labelled") -> str:
    """The Alpaca prompt for one question, worded in the question's language.

    ``labelled``: the language's QA instruction, and as input the passage and the question behind
    their labels (``Context: ...`` / ``Question: ...`` in that language, see
    :class:`~lightning_xllama.languages.QAPromptWords`). ``question``: the question itself is the
    instruction and the passage the input, so no label words are needed (the demo's synthetic
    languages have none).
    """
    if style == "question":
        return alpaca_prompt(example.question, example.context)
    if style != "labelled":
        raise ValueError(f"unknown QA prompt style {style!r}; expected 'labelled' or 'question'")
    words = get_language(example.lang).qa
    return alpaca_prompt(
        words.instruction,
        f"{words.context}: {example.context}\n{words.question}: {example.question}",
    )


def qa_answer(generated: str, prompt: str, lang: str) -> str:
    """The answer in a generated text: :func:`~lightning_xllama.evaluation.qa_metrics.extract_answer`
    (prompt echo removed, first non-empty line), then a leading answer label ("Answer:", or the
    language's own, e.g. "答案：") removed."""
    answer = extract_answer(generated, prompt)
    labels = {get_language(lang).qa.answer, "Answer"}
    pattern = r"^(?:" + "|".join(re.escape(label) for label in labels) + r")\s*[:：]\s*"
    return re.sub(pattern, "", answer, flags=re.IGNORECASE)


@dataclass(frozen=True)
class QASet:
    """One QA set to evaluate: its questions, language and the rules of its headline scores."""

    examples: list[QAExample]
    lang: str
    headline_rules: Rules


class QAEvaluation(GenerationEvaluation):
    """Answer QA sets zero-shot on validation passes; log exact match, F1 and the paper's
    "contains" score under both rule sets, and the off-target rate.

    Sets are ``xquad-{lang}`` and ``mlqa-{lang}`` for each of ``languages``, and each of ``files``
    under its file name (``my_qa.json`` -> ``my_qa``). Keys per set: ``val/{name}/{set}/`` +
    ``{mlqa,squad}/{exact_match,f1,contains}`` (both rule sets), ``exact_match``, ``f1`` and
    ``contains`` under the set's headline rules (XQuAD: SQuAD v1.1, as it is officially scored;
    MLQA: MLQA's; your files: ``files_rules``), and ``off_target``/``undetermined`` (the language
    of the whole generated text). Scores are percentages; each rank scores the questions it
    answered and the sums are added up across ranks.

    Args:
        languages: languages of the XQuAD and MLQA sets (context and question in that language).
        xquad_dir: folder of ``xquad.{lang}.json`` files.
        mlqa_dir: MLQA folder (``MLQA_V1``, holding ``dev/`` and ``test/``, or one of them).
        mlqa_split: ``dev`` or ``test``.
        files: your own SQuAD-format files, ``{language code: path}``.
        files_rules: rules of the headline scores of ``files``: ``mlqa`` or ``squad``.
        prompt_style: ``labelled`` (the language's instruction, context and question labels) or
            ``question`` (the question as the instruction, the passage as the input).
        name: metric namespace (``val/{name}/...``).
        max_samples: questions per set, spread evenly over the set (cost control).
        batch_size: generation batch size.
        max_new_tokens: generation length limit (answers are short spans).
        num_beams: 1 for greedy decoding.
        off_target: measure the share of outputs not in the set's language.
        language_id_candidates: languages the identifier may answer with (default: English and
            the sets' languages; every synthetic language for synthetic ones).
        every_n_validations: run on every N-th validation pass of ``fit``.
        before_training: also evaluate the starting model, logged at step 0.
        write_samples: write every answer of each pass to ``{log_dir}/{name}/{set}-step{N}.jsonl``
            and the first ``table_rows`` as a markdown table next to it.
        table_rows: sample answers sent to loggers that take tables (``log_text``).
    """

    progress_bar_metric = "f1"

    def __init__(
        self,
        languages: Optional[list[str]] = None,
        xquad_dir: Optional[str] = None,
        mlqa_dir: Optional[str] = None,
        mlqa_split: MLQASplit = "test",
        files: Optional[dict[str, str]] = None,
        files_rules: Rules = "mlqa",
        prompt_style: PromptStyle = "labelled",
        name: str = "qa",
        max_samples: Optional[int] = None,
        batch_size: int = 16,
        max_new_tokens: int = 32,
        num_beams: int = 1,
        off_target: bool = True,
        language_id_candidates: Optional[list[str]] = None,
        every_n_validations: int = 1,
        before_training: bool = True,
        write_samples: bool = True,
        table_rows: int = 8,
    ):
        super().__init__(name, GenerationSettings.from_arguments(locals()))
        self.languages, self.files = list(languages or []), dict(files or {})
        self.xquad_dir, self.mlqa_dir, self.mlqa_split = xquad_dir, mlqa_dir, mlqa_split
        if files_rules not in RULES:
            raise ValueError(f"unknown QA rules {files_rules!r}; expected one of {RULES}")
        if prompt_style not in ("labelled", "question"):
            raise ValueError(
                f"unknown QA prompt style {prompt_style!r}; expected 'labelled' or 'question'"
            )
        self.files_rules, self.prompt_style = files_rules, prompt_style
        if self.languages and xquad_dir is None and mlqa_dir is None:
            raise ValueError(
                "languages are the XQuAD/MLQA sets to evaluate: give xquad_dir or mlqa_dir too"
            )
        if (xquad_dir or mlqa_dir) and not self.languages:
            raise ValueError(
                "give the languages of the XQuAD/MLQA sets to evaluate, e.g. languages: [zh]"
            )
        if not self.languages and not self.files:
            raise ValueError("QAEvaluation needs sets: languages with xquad_dir/mlqa_dir, or files")
        self.sets: dict[str, QASet] = {}

    def prepare(self) -> None:
        """Read every QA file, so a missing or malformed one fails before training starts."""
        if self.sets:
            return
        paths: list[tuple[str, Path, str, Rules]] = []
        for lang in self.languages:
            if self.xquad_dir is not None:
                paths.append((f"xquad-{lang}", xquad_file(self.xquad_dir, lang), lang, "squad"))
            if self.mlqa_dir is not None:
                paths.append(
                    (
                        f"mlqa-{lang}",
                        mlqa_file(self.mlqa_dir, lang, lang, self.mlqa_split),
                        lang,
                        "mlqa",
                    )
                )
        for lang, path in self.files.items():
            paths.append((Path(path).stem, Path(path), lang, self.files_rules))
        sets: dict[str, QASet] = {}
        for set_name, path, lang, rules in paths:
            if set_name in sets:
                raise ValueError(
                    f"two QA sets are named {set_name!r}; evaluate one of them in another callback"
                )
            sets[set_name] = QASet(
                evenly_spaced(read_squad(path, lang), self.max_samples), lang, rules
            )
        self.prepare_identifier([qa_set.lang for qa_set in sets.values()])
        self.sets = sets

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        device = next(model.parameters()).device
        for set_name, qa_set in self.sets.items():
            prompts = [qa_prompt(example, self.prompt_style) for example in qa_set.examples]
            outputs = self.generate(model, tokenizer, prompts, sharded)
            answers = [
                qa_answer(output, prompt, qa_set.lang) for output, prompt in zip(outputs, prompts)
            ]
            mine = distributed.rank_share(len(answers))
            key = f"{self.name}/{set_name}"
            scores = {}
            for rules in RULES:
                metric = QAScores(rules, qa_set.lang).to(device)
                metric.update(
                    [answers[i] for i in mine], [qa_set.examples[i].answers for i in mine]
                )
                scores[rules] = {
                    name: float(value)
                    for name, value in metric.compute().items()
                    if name != "count"
                }
            for name, value in scores[qa_set.headline_rules].items():
                result.metrics[f"{key}/{name}"] = value
            for rules in RULES:
                for name, value in scores[rules].items():
                    result.metrics[f"{key}/{rules}/{name}"] = value
            for metric_name, value in self.off_target_scores(outputs, qa_set.lang, device).items():
                result.metrics[f"{key}/{metric_name}"] = value
            result.samples[set_name] = [
                {
                    "id": e.id,
                    "question": e.question,
                    "golds": list(e.answers),
                    "answer": answer,
                    "output": output,
                    "language": lang,
                }
                for e, answer, output, lang in zip(
                    qa_set.examples, answers, outputs, self.identify(outputs)
                )
            ]
            result.details[set_name] = {
                "headline_rules": qa_set.headline_rules,
                "prompt_style": self.prompt_style,
            }
        return result

    def report_notes(self, result: EvaluationResult) -> list[str]:
        return [
            f"- {set_name}: headline scores under the {d['headline_rules']} rules; prompt style {d['prompt_style']}"
            for set_name, d in result.details.items()
        ]
