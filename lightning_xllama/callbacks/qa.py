"""Zero-shot extractive QA measured during training: XQuAD, MLQA and your own SQuAD-format files,
prompted in the target language, scored with the paper's match (the headline) and under the MLQA
and the SQuAD v1.1 rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lightning.pytorch.utilities import rank_zero_warn

from lightning_xllama.callbacks.base import (
    EvaluationResult,
    Generation,
    GenerationEvaluation,
)
from lightning_xllama.data.eval_sets import MLQASplit, QAExample, mlqa_file, read_squad, xquad_file
from lightning_xllama.evaluation.judge import (
    CORRECTNESS_QUESTIONS,
    CorrectnessRun,
    JudgeClient,
    JudgeSettings,
    JudgeStats,
    judge_correctness,
)
from lightning_xllama.evaluation.qa_metrics import (
    RULES,
    PaperMatch,
    QAScores,
    Rules,
    extract_answer,
    paper_match,
)
from lightning_xllama.evaluation.test_sets import evenly_spaced
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import (
    OFFICIAL_QA_WORDS,
    Template,
    official_qa_input,
    official_qa_words,
    render_prompt,
)
from lightning_xllama.runtime import distributed

PromptStyle = Literal["labelled", "question", "official"]
PROMPT_STYLES: tuple[str, ...] = ("labelled", "question", "official")


def qa_fields(example: QAExample, style: PromptStyle = "labelled") -> tuple[str, str]:
    """Instruction and input of the prompt for one question, worded in the question's language.

    ``labelled`` (the package's): the language's QA instruction, and as input the passage and the
    question behind their labels (``Context: ...`` / ``Question: ...`` in that language, see
    :class:`~lightning_xllama.languages.QAPromptWords`). ``question``: the question itself is the
    instruction and the passage the input, so no label words are needed (the demo's synthetic
    languages have none). ``official``: the paper's layout (x-LLM ``data/xquad/xquad.py``): its
    instruction in the language, and passage, question and an open answer label
    (lines ``段落: ...``, ``问题: ...``, ``答案: ``), in the paper's words where it has them
    (:data:`~lightning_xllama.prompts.OFFICIAL_QA_WORDS`: ar, el, en, hi, tr, vi, zh), else in the
    language registry's words.
    """
    if style == "question":
        return example.question, example.context
    if style == "official":
        words, _ = official_qa_words(example.lang)
        return words.instruction, official_qa_input(example.context, example.question, words)
    if style != "labelled":
        raise ValueError(f"unknown QA prompt style {style!r}; expected one of {PROMPT_STYLES}")
    words = get_language(example.lang).qa
    return (
        words.instruction,
        f"{words.context}: {example.context}\n{words.question}: {example.question}",
    )


def qa_prompt(
    example: QAExample,
    style: PromptStyle = "labelled",
    template: Template = "alpaca",
    tokenizer=None,
) -> str:
    """The prompt for one question (:func:`qa_fields`) in ``template`` (``tokenizer``: for
    ``chat``)."""
    return render_prompt(*qa_fields(example, style), template, tokenizer)


def qa_answer(generated: str, prompt: str, lang: str) -> str:
    """The answer in a generated text: :func:`~lightning_xllama.evaluation.qa_metrics.extract_answer`
    (prompt echo removed, first non-empty line), then a leading answer label ("Answer:", or the
    language's own, e.g. "答案：", the paper's label included) removed."""
    answer = extract_answer(generated, prompt)
    labels = {get_language(lang).qa.answer, "Answer"}
    if lang in OFFICIAL_QA_WORDS:
        labels.add(OFFICIAL_QA_WORDS[lang].answer)
    pattern = r"^(?:" + "|".join(re.escape(label) for label in labels) + r")\s*[:：]\s*"
    return re.sub(pattern, "", answer, flags=re.IGNORECASE)


@dataclass(frozen=True)
class QASet:
    """One QA set to evaluate: its questions, language and the rules of its headline scores."""

    examples: list[QAExample]
    lang: str
    headline_rules: Rules


class QAEvaluation(GenerationEvaluation):
    """Answer QA sets zero-shot on validation passes; log the paper's match (the headline), exact
    match, F1 and "contains" under both official rule sets, and the off-target rate.

    Sets are ``xquad-{lang}`` and ``mlqa-{lang}`` for each of ``languages``, and each of ``files``
    under its file name (``my_qa.json`` -> ``my_qa``). Keys per set: ``val/{name}/{set}/`` +
    ``paper_match`` (the headline, shown in the progress bar and first in tables: a gold answer,
    lower-cased, inside the whole lower-cased output, as the paper scored XQuAD and MLQA; see
    :func:`~lightning_xllama.evaluation.qa_metrics.paper_match`),
    ``{mlqa,squad}/{exact_match,f1,contains}`` (both rule sets, on the extracted answer: the first
    line, answer label removed), ``exact_match``, ``f1`` and ``contains`` under the set's official
    rules (XQuAD: SQuAD v1.1; MLQA: MLQA's; your files: ``files_rules``), and
    ``off_target``/``undetermined`` (the language of the whole generated text). Scores are
    percentages; each rank scores the questions it answered and the sums are added up across
    ranks.

    Args:
        languages: languages of the XQuAD and MLQA sets (context and question in that language).
        xquad_dir: folder of ``xquad.{lang}.json`` files.
        mlqa_dir: MLQA folder (``MLQA_V1``, holding ``dev/`` and ``test/``, or one of them).
        mlqa_split: ``dev`` or ``test``.
        files: your own SQuAD-format files, ``{language code: path}``.
        files_rules: rules of the unprefixed ``exact_match``/``f1``/``contains`` of ``files``:
            ``mlqa`` or ``squad``.
        prompt_style: ``labelled`` (the language's instruction, context and question labels),
            ``question`` (the question as the instruction, the passage as the input) or
            ``official`` (the paper's instruction and paragraph/question/answer labels in the
            language; the registry's words for languages the paper has none for).
        keep_bom: keep a byte-order mark (U+FEFF) that starts a passage or question, as the
            paper's prompts do (9 to 47 of XQuAD's 1,190 per language); default: kept with
            ``prompt_style: official``, removed otherwise.
        name: metric namespace (``val/{name}/...``).
        generation: how answers are decoded (:class:`~lightning_xllama.callbacks.base.Generation`;
            defaults: 16 a batch, 64 new tokens, greedy); the paper's match reads the whole
            output, so room for a sentence around the answer counts.
        judge_base_url: an OpenAI-compatible endpoint: the first ``judge_questions`` answers of
            each set are judged YES/NO for correctness with the paper's prompt (x-LLM
            ``eval/xquad.eval.py``, temperature 0; the passage, question and answer label as
            context) and logged as ``judge_correct`` (percent YES of those judged; an empty answer
            is NO without a request, an endpoint failure is left out and counted as
            ``judge_failed``). Off without it.
        judge_model: the judge model at that endpoint (the paper: ``gpt-3.5-turbo``).
        judge_api_key_env: NAME of the environment variable holding its key (null: none needed).
        judge_questions: how many of each set's first questions are judged (the paper: 100).
        judge_cache_dir: folder of the judge's reply cache (None: no cache).
        **kwargs: every generation evaluation's settings (``max_samples``, ``off_target``,
            ``every_n_validations``, ``template``...; see
            :class:`~lightning_xllama.callbacks.base.GenerationEvaluation`).
    """

    default_generation = Generation(batch_size=16, max_new_tokens=64)

    progress_bar_metric = "paper_match"

    def __init__(
        self,
        languages: Optional[list[str]] = None,
        xquad_dir: Optional[str] = None,
        mlqa_dir: Optional[str] = None,
        mlqa_split: MLQASplit = "test",
        files: Optional[dict[str, str]] = None,
        files_rules: Rules = "mlqa",
        prompt_style: PromptStyle = "labelled",
        keep_bom: Optional[bool] = None,
        name: str = "qa",
        generation: Optional[Generation] = None,
        judge_base_url: Optional[str] = None,
        judge_model: Optional[str] = None,
        judge_api_key_env: Optional[str] = "OPENAI_API_KEY",
        judge_questions: int = CORRECTNESS_QUESTIONS,
        judge_cache_dir: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(name, generation, **kwargs)
        self.languages, self.files = list(languages or []), dict(files or {})
        self.keep_bom = prompt_style == "official" if keep_bom is None else keep_bom
        if (judge_base_url is None) != (judge_model is None):
            raise ValueError(
                "QAEvaluation: the correctness judge needs judge_base_url and judge_model"
            )
        if judge_questions < 1:
            raise ValueError(
                f"QAEvaluation: judge_questions must be at least 1, got {judge_questions}"
            )
        self.judge = (
            None
            if judge_base_url is None
            else JudgeSettings(
                base_url=judge_base_url,
                model=judge_model,
                api_key_env=judge_api_key_env,
                temperature=0.0,
                cache_dir=judge_cache_dir,
            )
        )
        self.judge_questions = judge_questions
        self.xquad_dir, self.mlqa_dir, self.mlqa_split = xquad_dir, mlqa_dir, mlqa_split
        if files_rules not in RULES:
            raise ValueError(f"unknown QA rules {files_rules!r}; expected one of {RULES}")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"unknown QA prompt style {prompt_style!r}; expected one of {PROMPT_STYLES}"
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
                evenly_spaced(read_squad(path, lang, self.keep_bom), self.max_samples),
                lang,
                rules,
            )
        self.prepare_identifier([qa_set.lang for qa_set in sets.values()])
        if self.judge is not None and distributed.rank() == 0:
            self.judge.api_key()  # raises, naming the variable, when it is not set
        unworded = sorted({s.lang for s in sets.values()} - set(OFFICIAL_QA_WORDS))
        if self.prompt_style == "official" and unworded:
            rank_zero_warn(
                f"prompt_style official: the paper has no QA prompt words for {unworded}; their "
                "prompts use the language registry's words (lightning_xllama.languages) in the "
                "paper's layout"
            )
        self.sets = sets

    def wording(self, lang: str) -> str:
        """Whose words the prompts of ``lang`` use, for the report."""
        if self.prompt_style == "official" and official_qa_words(lang)[1]:
            return "the paper's words"
        if self.prompt_style == "question":
            return "no label words"
        return "the language registry's words"

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        device = next(model.parameters()).device
        for set_name, qa_set in self.sets.items():
            prompts = [
                self.prompt_for(*qa_fields(example, self.prompt_style), tokenizer)
                for example in qa_set.examples
            ]
            stops: dict[str, int] = {}
            outputs = self.generate(model, tokenizer, prompts, sharded, stops, set_name=set_name)
            answers = [
                qa_answer(output, prompt, qa_set.lang) for output, prompt in zip(outputs, prompts)
            ]
            mine = distributed.rank_share(len(answers))
            golds = [example.answers for example in qa_set.examples]
            key = f"{self.name}/{set_name}"
            headline = PaperMatch().to(device)
            headline.update([outputs[i] for i in mine], [golds[i] for i in mine])
            result.metrics[f"{key}/paper_match"] = float(headline.compute())
            scores = {}
            for rules in RULES:
                metric = QAScores(rules, qa_set.lang).to(device)
                metric.update([answers[i] for i in mine], [golds[i] for i in mine])
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
            result.metrics.update(self.stop_metrics(key, stops))
            for metric_name, value in self.off_target_scores(outputs, qa_set.lang, device).items():
                result.metrics[f"{key}/{metric_name}"] = value
            judged = None
            if self.judge is not None:
                cases = [
                    (qa_fields(example, self.prompt_style)[1], output)
                    for example, output in zip(
                        qa_set.examples[: self.judge_questions], outputs[: self.judge_questions]
                    )
                ]
                judged = distributed.on_rank_zero(lambda: self._judge_correctness(cases, set_name))
                if judged.score is not None:
                    result.metrics[f"{key}/judge_correct"] = judged.score
                result.metrics[f"{key}/judge_failed"] = float(len(cases) - judged.judged)
            result.samples[set_name] = [
                {
                    "id": e.id,
                    "question": e.question,
                    "golds": list(e.answers),
                    "answer": answer,
                    "output": output,
                    "paper_match": int(paper_match(output, e.answers)),
                    "language": lang,
                }
                for e, answer, output, lang in zip(
                    qa_set.examples, answers, outputs, self.identify(outputs)
                )
            ]
            if judged is not None:
                for record, verdict in zip(result.samples[set_name], judged.records):
                    record["judge_correct"] = verdict["correct"]
            result.details[set_name] = {
                "headline": "paper_match",
                "headline_rules": qa_set.headline_rules,
                "prompt_style": self.prompt_style,
                "wording": self.wording(qa_set.lang),
                "template": self.prompt_template,
                "max_new_tokens": self.max_new_tokens,
                "keep_bom": self.keep_bom,
            }
            if judged is not None:
                result.details[set_name]["judge"] = {
                    "judge_model": self.judge.model,
                    "questions": len(judged.records),
                    "judged": judged.judged,
                    "correct": judged.correct,
                    **judged.stats.as_dict(),
                }
        return result

    def _judge_correctness(self, cases: list[tuple[str, str]], set_name: str) -> CorrectnessRun:
        """Rank 0's YES/NO judging; an unexpected error leaves every case unjudged (warned)."""
        try:
            with JudgeClient(self.judge) as client:
                return judge_correctness(cases, client)
        except Exception as error:  # noqa: BLE001 - evaluation goes on without the judge
            rank_zero_warn(
                f"{self.name}/{set_name}: the correctness judge could not run ({error!r})"
            )
            records = [{"answer": answer, "correct": None} for _, answer in cases]
            return CorrectnessRun(records, JudgeStats(failures={"other": len(cases)}), 0, 0)

    def report_notes(self, result: EvaluationResult) -> list[str]:
        return [
            f"- {set_name}: headline `paper_match` (gold answer inside the whole output, lower-cased, "
            f"as the paper scored); `exact_match`/`f1`/`contains` under the {d['headline_rules']} "
            f"rules; prompt style {d['prompt_style']} ({d['wording']}); "
            f"answers up to {d['max_new_tokens']} tokens"
            for set_name, d in result.details.items()
        ]
