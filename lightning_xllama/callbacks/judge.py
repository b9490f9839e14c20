"""Open-ended instruction following judged by an LLM during training (the paper's MI-Eval, which
asked ChatGPT): the model answers a set of instructions per language and an OpenAI-compatible
judge scores each answer (1-10), compares it with a reference answer (win/tie/loss), or, as the
paper did, compares it with another model's answer through FairEval behind a language gate."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from lightning_xllama.callbacks.base import (
    EvaluationResult,
    Generation,
    GenerationEvaluation,
)
from lightning_xllama.data.sources import Example, read_instructions
from lightning_xllama.evaluation.judge import (
    FAIREVAL_SAMPLES,
    MODES,
    JudgeClient,
    JudgeItem,
    JudgeMode,
    JudgeRun,
    JudgeSettings,
    JudgeStats,
    judge_items,
)
from lightning_xllama.evaluation.off_target import build_identifier
from lightning_xllama.evaluation.test_sets import evenly_spaced
from lightning_xllama.languages import get_language
from lightning_xllama.runtime import distributed


@dataclass(frozen=True)
class JudgeSet:
    """The instructions of one language and, for pairwise judging, their reference answers."""

    examples: list[Example]
    references: Optional[list[str]]


class JudgeEvaluation(GenerationEvaluation):
    """Answer open instructions on validation passes and have an LLM judge the answers.

    ``single`` mode logs ``val/{name}/{lang}/score`` (mean 1-10 score); ``pairwise`` mode compares
    each answer with the reference answer in both orders and logs ``val/{name}/{lang}/win_rate``
    (percent, ties count half). ``faireval`` mode is the paper's MI-Eval (x-LLM
    ``eval/mieval.eval.py``): the other model's answers (``references``, or generated once by
    ``opponent_model``) and the model's go through a language gate (an answer the language
    identifier does not find in the set's language loses; py3langid here, fastText's lid.176 in the
    paper), then the FairEval prompt scores both 1-10 in both orders, 3 samples per request at
    temperature 1 by default; the higher mean wins, and ``win_rate``, ``wins``, ``ties`` and
    ``losses`` are logged. Also logged: ``failed`` (answers the judge could not judge after
    its retries: left out of the score) and the off-target rate. The judge is told the language each
    answer must be in, and to count an answer in another language as a fault.

    Endpoint failures never stop training: a failed judgement is counted by kind (timeout, 429,
    5xx, malformed JSON...) and reported; when all of a set's judgements fail, a warning says so
    and no score is logged for that pass. Only rank 0 talks to the judge; every rank logs the same
    values. Every pass writes ``{log_dir}/{name}/{lang}-step{N}.jsonl`` (answers, verdicts,
    reasons) and ``report-step{N}.json`` (requests, cache hits, tokens, failures by kind, scores).
    The API key is read from the environment variable named by ``api_key_env``; it is never
    stored, logged or written. With a logger and no ``cache_dir`` the cache lives in
    ``{log_dir}/{name}/cache``, so a resumed or repeated pass costs no requests.

    Args:
        files: instruction files per language, ``{lang: path}`` (Alpaca records, ``.json`` or
            ``.jsonl``; ``output`` not needed). The language is the one answers are expected in.
        base_url: the judge's OpenAI-compatible API root, e.g. ``https://api.openai.com/v1``.
        model: the judge model, e.g. ``gpt-4o-mini``.
        mode: ``single`` (score each answer), ``pairwise`` (against ``references``) or
            ``faireval`` (against another model's answers, the paper's way).
        references: per language, ``{lang: path}``, records in the order of ``files`` (same
            instructions): for ``pairwise`` Alpaca records whose ``output`` is the reference; for
            ``faireval`` the other model's answers (``prediction``, as the paper's
            ``inference.py`` writes, or ``output`` or ``answer``, as ``evaluate`` writes).
        opponent_model: for ``faireval`` instead of ``references``: a model folder whose answers
            are generated at the first pass (greedy, in the template of its ``run.json``, else this
            evaluation's) and kept for later passes.
        api_key_env: NAME of the environment variable holding the key (null: no key needed).
        timeout: seconds per request.
        max_attempts: attempts per judgement.
        backoff_base: seconds before the first retry, doubled each time (jittered).
        backoff_max: longest backoff.
        retry_after_max: cap on a 429's ``Retry-After``.
        temperature: judge sampling temperature (default 0; ``faireval``: 1, as the paper).
        max_tokens: judge reply length limit (default 256; ``faireval``: 512, as the paper).
        samples: completions per judge request (default 1; ``faireval``: 3, averaged, as the
            paper's ``-k 3``).
        json_mode: request ``response_format={"type": "json_object"}``.
        concurrency: judge requests in flight at once.
        cache_dir: folder of the reply cache (default: ``{log_dir}/{name}/cache`` with a logger).
        name: metric namespace (``val/{name}/...``).
        generation: how answers are decoded (:class:`~lightning_xllama.callbacks.base.Generation`;
            defaults: 16 a batch, 256 new tokens, greedy: open answers are long).
        **kwargs: every generation evaluation's settings (``max_samples``, ``off_target``,
            ``every_n_validations``, ``template``...; see
            :class:`~lightning_xllama.callbacks.base.GenerationEvaluation`).
    """

    default_generation = Generation(batch_size=16, max_new_tokens=256)

    def __init__(
        self,
        files: dict[str, str],
        base_url: str,
        model: str,
        mode: JudgeMode = "single",
        references: Optional[dict[str, str]] = None,
        opponent_model: Optional[str] = None,
        api_key_env: Optional[str] = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        retry_after_max: float = 60.0,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        samples: Optional[int] = None,
        json_mode: bool = False,
        concurrency: int = 4,
        cache_dir: Optional[str] = None,
        name: str = "judge",
        generation: Optional[Generation] = None,
        **kwargs,
    ):
        super().__init__(name, generation, **kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown judge mode {mode!r}; expected one of {MODES}")
        faireval = mode == "faireval"
        temperature = (1.0 if faireval else 0.0) if temperature is None else temperature
        max_tokens = (512 if faireval else 256) if max_tokens is None else max_tokens
        samples = (FAIREVAL_SAMPLES if faireval else 1) if samples is None else samples
        self.judge = JudgeSettings.from_arguments(locals())
        if not files:
            raise ValueError("JudgeEvaluation needs instruction files: files: {lang: path}")
        references = dict(references or {})
        if opponent_model is not None and not faireval:
            raise ValueError("opponent_model is what faireval compares with: set mode: faireval")
        if faireval and (opponent_model is None) == (not references):
            raise ValueError(
                "faireval compares with another model: give its answers (references: {lang: path}) "
                "or its folder (opponent_model), one of them"
            )
        if faireval and references and set(references) != set(files):
            raise ValueError(
                f"faireval needs the other model's answers for every language of files "
                f"({sorted(files)}), got references for {sorted(references)}"
            )
        if mode == "pairwise" and set(references) != set(files):
            raise ValueError(
                f"pairwise judging needs reference answers for every language of files "
                f"({sorted(files)}), got references for {sorted(references)}"
            )
        if mode == "single" and references:
            raise ValueError("references are compared with in pairwise mode: set mode: pairwise")
        self.files, self.references, self.mode = dict(files), references, mode
        self.opponent_model = opponent_model
        self.progress_bar_metric = "score" if mode == "single" else "win_rate"
        self.sets: dict[str, JudgeSet] = {}
        self.gate = None
        self._default_cache_dir: Optional[str] = None

    def prepare(self) -> None:
        """Read the instructions and references, check the languages and that the key variable is
        set, so a mistake fails before training starts."""
        if self.sets:
            return
        sets = {}
        for lang, path in self.files.items():
            get_language(lang)
            examples = list(read_instructions(path, lang, require_output=False))
            references = None
            if self.mode == "faireval" and self.references:
                answers = read_model_answers(self.references[lang])
                if [(a["instruction"], a["input"]) for a in answers] != [
                    (e.instruction, e.input) for e in examples
                ]:
                    raise ValueError(
                        f"the other model's answers {self.references[lang]} must answer the "
                        f"instructions of {path}, in the same order"
                    )
                references = evenly_spaced([a["answer"] for a in answers], self.max_samples)
            if self.mode == "pairwise":
                refs = list(read_instructions(self.references[lang], lang))
                if [(r.instruction, r.input) for r in refs] != [
                    (e.instruction, e.input) for e in examples
                ]:
                    raise ValueError(
                        f"the references {self.references[lang]} must hold the instructions of "
                        f"{path}, in the same order, with the reference answer as output"
                    )
                references = evenly_spaced([r.output for r in refs], self.max_samples)
            sets[lang] = JudgeSet(evenly_spaced(examples, self.max_samples), references)
        if distributed.rank() == 0:
            self.judge.api_key()  # raises, naming the variable, when it is not set
        self.prepare_identifier(list(sets))
        if self.mode == "faireval":
            self.gate = self.identifier or build_identifier(list(sets), self.language_id_candidates)
        self.sets = sets

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """As every evaluation, with the reply cache in the log folder unless ``cache_dir`` is set."""
        if self.judge.cache_dir is None and trainer.loggers:
            self._default_cache_dir = str(Path(trainer.log_dir) / self.name / "cache")
        return super().measure(trainer, pl_module)

    def _judge(self, items: list[JudgeItem]) -> JudgeRun:
        """Rank 0's judging; an unexpected error becomes a fully failed run, never an exception
        (the other ranks are waiting for the result)."""
        settings = self.judge
        if settings.cache_dir is None and self._default_cache_dir is not None:
            settings = replace(settings, cache_dir=self._default_cache_dir)
        try:
            identify = self.gate.identify if self.gate is not None else None
            with JudgeClient(settings) as client:
                return judge_items(items, self.mode, client, identify)
        except Exception as error:  # noqa: BLE001 - training goes on without the judge
            stats = JudgeStats(failures={"other": len(items)})
            rank_zero_warn(f"{self.name}: the judge could not run ({error!r})")
            records = [{"instruction": i.instruction, "answer": i.answer} for i in items]
            return JudgeRun(self.mode, records, stats, {}, 0, len(items))

    def opponent_answers(self, model, sharded: bool) -> None:
        """Generate ``opponent_model``'s answers once (on the evaluated model's device and dtype),
        as references of every set; the opponent is freed afterwards."""
        if self.opponent_model is None or all(s.references for s in self.sets.values()):
            return
        from transformers import AutoModelForCausalLM

        from lightning_xllama.callbacks.base import folder_template
        from lightning_xllama.prompts import render_prompt
        from lightning_xllama.runtime.hf_loading import load_tokenizer

        parameter = next(model.parameters())
        tokenizer = load_tokenizer(self.opponent_model)
        template = folder_template(self.opponent_model) or self.prompt_template
        opponent = AutoModelForCausalLM.from_pretrained(self.opponent_model, dtype=parameter.dtype)
        opponent.to(parameter.device).eval()
        try:
            for lang, judge_set in self.sets.items():
                prompts = [
                    render_prompt(e.instruction, e.input, template, tokenizer)
                    for e in judge_set.examples
                ]
                answers = self.generate(opponent, tokenizer, prompts, sharded=False)
                self.sets[lang] = replace(judge_set, references=answers)
        finally:
            del opponent

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        device = next(model.parameters()).device
        self.opponent_answers(model, sharded)
        for lang, judge_set in self.sets.items():
            prompts = [
                self.prompt_for(e.instruction, e.input, tokenizer) for e in judge_set.examples
            ]
            answers = self.generate(model, tokenizer, prompts, sharded, set_name=lang)
            references = judge_set.references or [None] * len(answers)
            items = [
                JudgeItem(e.instruction, e.input, lang, answer, reference)
                for e, answer, reference in zip(judge_set.examples, answers, references)
            ]
            run = distributed.on_rank_zero(lambda: self._judge(items))
            key = f"{self.name}/{lang}"
            for metric in ("score", "win_rate"):
                if metric in run.scores:
                    result.metrics[f"{key}/{metric}"] = float(run.scores[metric])
            result.metrics[f"{key}/failed"] = float(run.failed)
            for metric, value in self.off_target_scores(answers, lang, device).items():
                result.metrics[f"{key}/{metric}"] = value
            message = run.failure_message(f"{self.name}/{lang}")
            if message:
                rank_zero_warn(message)
            for record, language in zip(run.records, self.identify(answers)):
                record["language"] = language
            result.samples[lang] = run.records
            result.details[lang] = run.report(self.judge)
        return result

    def write_outputs(self, result: EvaluationResult, out_dir: Path, tag: str) -> dict[str, Path]:
        """The judgements (see :class:`GenerationEvaluation`) and ``report-{tag}.json``: requests,
        cache hits, tokens, failures by kind and scores of each language."""
        files = super().write_outputs(result, out_dir, tag)
        out_dir.mkdir(parents=True, exist_ok=True)
        report = out_dir / (f"report-{tag}.json" if tag else "report.json")
        report.write_text(json.dumps(result.details, indent=1), encoding="utf-8")
        return files

    def report_notes(self, result: EvaluationResult) -> list[str]:
        return [
            f"- {lang}: {d['mode']} judging by `{d.get('judge_model')}`; {d['judged']} of "
            f"{d['items']} judged; {d['requests']} requests, {d['cache_hits']} cache hits, "
            f"{d['prompt_tokens']}+{d['completion_tokens']} tokens; failures {d['failures'] or 'none'}"
            for lang, d in result.details.items()
        ]


def read_model_answers(path: str | Path) -> list[dict]:
    """A model's answers to a set of instructions, in order: a JSONL or JSON list of records with
    ``instruction``, optionally ``input``, and the answer as ``prediction`` (x-LLM ``inference.py``),
    ``answer`` (the outputs ``evaluate`` writes) or ``output``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        records = json.loads(text)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
    answers = []
    for number, record in enumerate(records, start=1):
        found = next((k for k in ("prediction", "answer", "output") if k in record), None)
        if "instruction" not in record or found is None:
            raise ValueError(
                f"{path}: record {number} needs 'instruction' and an answer "
                "('prediction', 'answer' or 'output')"
            )
        answers.append(
            {
                "instruction": record["instruction"],
                "input": record.get("input") or "",
                "answer": str(record[found]),
            }
        )
    if not answers:
        raise ValueError(f"{path}: no answers")
    return answers
