"""The paper's evaluation of a model for a list of languages, and its table.

``evaluate --model M --paper.languages [zh,ar] --paper.flores_dir ... --paper.xquad_dir ...``
builds the evaluations the paper reports (FLORES-101 devtest en->x and x->en with COMET, BLEU,
spBLEU and BLEURT, greedy, up to 512 new tokens, the paper's test instruction; XQuAD and MLQA with the paper's match and the official EM/F1; the wrong-language
rate; an LLM judge of open instructions when an endpoint is given), runs them as ``evaluate`` runs
any evaluation, and writes ``paper_table.md`` and ``paper_table.json``: one row per language, the
metric signatures under the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lightning_xllama.data.eval_sets import FloresVersion
from lightning_xllama.evaluation.plots import plot_paper_table
from lightning_xllama.languages import MLQA_LANGUAGES, XQUAD_LANGUAGES, get_language

COLUMNS = (
    ("en-x COMET", "flores", "en-{x}", "comet"),
    ("en-x BLEU", "flores", "en-{x}", "bleu"),
    ("en-x spBLEU", "flores", "en-{x}", "spbleu"),
    ("en-x BLEURT", "flores", "en-{x}", "bleurt"),
    ("en-x off-target %", "flores", "en-{x}", "off_target"),
    ("x-en COMET", "flores", "{x}-en", "comet"),
    ("x-en BLEU", "flores", "{x}-en", "bleu"),
    ("x-en spBLEU", "flores", "{x}-en", "spbleu"),
    ("XQuAD paper match", "xquad", "xquad-{x}", "paper_match"),
    ("XQuAD EM", "xquad", "xquad-{x}", "exact_match"),
    ("XQuAD F1", "xquad", "xquad-{x}", "f1"),
    ("MLQA paper match", "mlqa", "mlqa-{x}", "paper_match"),
    ("MLQA EM", "mlqa", "mlqa-{x}", "exact_match"),
    ("MLQA F1", "mlqa", "mlqa-{x}", "f1"),
    ("QA off-target %", "xquad", "xquad-{x}", "off_target"),
    ("judge win rate %", "judge", "{x}", "win_rate"),
    ("judge score", "judge", "{x}", "score"),
)
"""(column, evaluation name, set key with ``{x}`` for the language, metric)."""


@dataclass
class PaperBenchmarks:
    """The paper's benchmarks for ``languages`` (registry codes: ``zh``, ``ar``, ...).

    Args:
        languages: the target languages; each gets a row.
        flores_dir: FLORES folder (``devtest/{code}.devtest``); en->x and x->en for each language.
        flores_version: ``flores101`` (the paper) or ``flores200`` file codes.
        xquad_dir: XQuAD folder (``xquad.{lang}.json``); used for the XQuAD languages.
        mlqa_dir: MLQA folder; used for the MLQA languages.
        spm_model: FLORES-101 SentencePiece model, for spBLEU.
        comet_model: local ``wmt22-comet-da`` folder (the paper's headline).
        bleurt_model: local converted BLEURT-20 folder.
        judge_base_url: an OpenAI-compatible endpoint; with ``judge_model`` and
            ``judge_files``, open instructions are judged (key from ``OPENAI_API_KEY``).
        judge_model: the judge model's name at that endpoint.
        judge_files: per language, a JSONL/JSON of open instructions (MI-Eval).
        judge_references: per language, reference answers for pairwise judging (win rate);
            without them each answer is scored alone (1-10).
        max_samples: sentences / questions / instructions per set (cost control; None: all).
        batch_size: generation batch size.
        flores_max_new_tokens: FLORES translation length limit (the paper's: 512).
    """

    languages: list[str]
    flores_dir: Optional[str] = None
    flores_version: FloresVersion = "flores101"
    xquad_dir: Optional[str] = None
    mlqa_dir: Optional[str] = None
    spm_model: Optional[str] = None
    comet_model: Optional[str] = None
    bleurt_model: Optional[str] = None
    judge_base_url: Optional[str] = None
    judge_model: Optional[str] = None
    judge_files: Optional[dict[str, str]] = None
    judge_references: Optional[dict[str, str]] = None
    max_samples: Optional[int] = None
    batch_size: int = 16
    flores_max_new_tokens: int = 512

    def __post_init__(self) -> None:
        if not self.languages:
            raise ValueError("paper.languages: give at least one language")
        for code in self.languages:
            get_language(code)  # an unknown code fails here, listing the known ones
        if not (self.flores_dir or self.xquad_dir or self.mlqa_dir or self.judge_files):
            raise ValueError(
                "paper: give at least one of flores_dir, xquad_dir, mlqa_dir or judge_files"
            )
        judge = (self.judge_base_url, self.judge_model, self.judge_files)
        if any(judge) and not all(judge):
            raise ValueError(
                "paper: the judge needs judge_base_url, judge_model and judge_files together"
            )

    def evaluations(self) -> list:
        """The evaluation callbacks of the paper's table, configured for these languages."""
        from lightning_xllama.callbacks import (
            Generation,
            JudgeEvaluation,
            QAEvaluation,
            TranslationEvaluation,
        )

        found = []
        if self.flores_dir:
            found.append(
                TranslationEvaluation(
                    name="flores",
                    directions=[d for x in self.languages for d in (f"en-{x}", f"{x}-en")],
                    flores_dir=self.flores_dir,
                    flores_version=self.flores_version,
                    instruction="official",
                    spm_model=self.spm_model,
                    comet_model=self.comet_model,
                    bleurt_model=self.bleurt_model,
                    max_samples=self.max_samples,
                    generation=Generation(self.batch_size, self.flores_max_new_tokens),
                    before_training=False,
                )
            )
        for name, folder, known in (
            ("xquad", self.xquad_dir, XQUAD_LANGUAGES),
            ("mlqa", self.mlqa_dir, MLQA_LANGUAGES),
        ):
            languages = [x for x in self.languages if x in known]
            if folder and languages:
                found.append(
                    QAEvaluation(
                        name=name,
                        languages=languages,
                        **{f"{name}_dir": folder},
                        prompt_style="official",
                        max_samples=self.max_samples,
                        generation=Generation(self.batch_size),
                        before_training=False,
                    )
                )
        if self.judge_files:
            found.append(
                JudgeEvaluation(
                    files=self.judge_files,
                    base_url=self.judge_base_url,
                    model=self.judge_model,
                    mode="pairwise" if self.judge_references else "single",
                    references=self.judge_references,
                    max_samples=self.max_samples,
                    generation=Generation(self.batch_size),
                    before_training=False,
                )
            )
        return found


def paper_table(report: dict, languages: list[str]) -> dict:
    """The rows of the paper's table from an ``evaluate`` report: per language, every column
    that was measured (columns measured for no language are left out), and the signatures."""
    metrics = report["metrics"]
    rows, used = [], []
    for x in languages:
        row = {"language": x}
        for column, evaluation, key, metric in COLUMNS:
            value = metrics.get(f"{evaluation}/{key.format(x=x)}/{metric}")
            if value is not None:
                row[column] = value
                if column not in used:
                    used.append(column)
        rows.append(row)
    order = [column for column, *_ in COLUMNS if column in used]
    signatures = {}
    for evaluation, details in report.get("details", {}).items():
        for key, value in (details or {}).items():
            if isinstance(value, dict):
                found = {k: v for k, v in value.items() if k.endswith("signature")}
                if found:
                    signatures[f"{evaluation}/{key}"] = found
    table = {"model": report["model"], "columns": order, "rows": rows, "signatures": signatures}
    if "template" in report:
        table["template"] = report["template"]
    return table


def write_paper_table(table: dict, out: Path) -> None:
    """``paper_table.json``, ``paper_table.md`` (scores as percentages, COMET/BLEURT as the
    models give them) and ``paper_table.png`` (:func:`plot_paper_table`: bars by language)."""
    plot_paper_table(table, out / "paper_table.png")
    (out / "paper_table.json").write_text(json.dumps(table, indent=1, ensure_ascii=False))
    header = ["language", *table["columns"]]
    lines = [
        f"# The paper's table for `{table['model']}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    if "template" in table:
        used = table["template"]
        lines[1:1] = ["", f"Prompts in the `{used['template']}` template ({used['source']})."]
    for row in table["rows"]:
        cells = [row["language"]] + [f"{row[c]:.2f}" if c in row else "-" for c in table["columns"]]
        lines.append("| " + " | ".join(cells) + " |")
    if table["signatures"]:
        lines += ["", "Signatures:", ""]
        for where, found in table["signatures"].items():
            lines.append(f"- {where}: " + "; ".join(f"{k} `{v}`" for k, v in found.items()))
    (out / "paper_table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
