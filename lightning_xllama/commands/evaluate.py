"""``python -m lightning_xllama evaluate``: score any Hugging Face model folder, outside training.

The evaluations are the training callbacks themselves (:class:`TranslationEvaluation`,
:class:`QAEvaluation`, :class:`RepresentationProbe`, or your own
:class:`~lightning_xllama.callbacks.EvaluationCallback`), configured with the same keys, and run
through the same ``prepare``/``run`` code, so a baseline and a finished run are measured exactly as
the validation passes measured the run: prompts in the template the model was trained with (the
``run.json`` that exports copy into the model folder), unless ``--template`` says otherwise.
Results go to ``report.json`` (every score, signature and
curve) and ``report.md`` (tables, samples, plots), next to every output.

Each set's progress is shown as it is generated and its outputs are written batch by batch to
``{output_dir}/{name}/{set}.partial.jsonl``; each finished evaluation's scores to
``{output_dir}/{name}/result.json``. ``--resume`` reads them back (when ``settings.json`` says
the settings are the same): finished evaluations are not run again, and a set stopped midway
generates only its missing rows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Literal, Optional

import torch

from lightning_xllama.callbacks import (
    EvaluationCallback,  # imports every evaluation class: short names resolve
)
from lightning_xllama.callbacks.base import (
    EvaluationResult,
    GenerationEvaluation,
    folder_template,
)
from lightning_xllama.commands.paper_table import PaperBenchmarks, paper_table, write_paper_table
from lightning_xllama.evaluation.partial_outputs import GENERATED_SUFFIX, PARTIAL_SUFFIX
from lightning_xllama.languages import import_language_modules
from lightning_xllama.prompts import Template, check_template
from lightning_xllama.runtime.hf_loading import check_model_path, load_tokenizer
from lightning_xllama.runtime.run_record import RUN_RECORD_FILE, read_run_record

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SETTINGS_FILE = "settings.json"
"""The settings an output folder's results were measured with, checked by ``--resume``."""
RESULT_FILE = "result.json"
"""A finished evaluation's scores, samples and details, in its own folder."""


def plain(value):
    """``value`` as JSON data when it is settings-like (numbers, text, lists, dicts,
    dataclasses); None for anything else (loaded models, open files)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return None


def evaluation_settings(evaluation: EvaluationCallback) -> dict:
    """What an evaluation was configured with: its class and public settings (read before
    ``prepare`` loads its data)."""
    found = {"class": f"{type(evaluation).__module__}.{type(evaluation).__qualname__}"}
    for key, value in vars(evaluation).items():
        if not key.startswith("_") and plain(value) is not None:
            found[key] = plain(value)
    return found


def check_resume(out: Path, settings: dict, resume: bool) -> None:
    """With ``resume``, refuse a folder whose ``settings.json`` differs from ``settings``
    (naming what differs); then write ``settings`` there."""
    path = out / SETTINGS_FILE
    if resume and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        differ = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if differ:
            raise ValueError(
                f"--resume: {path} holds results measured with other settings (differing: "
                f"{', '.join(differ)}); give another --output_dir, or run without --resume to "
                "measure afresh"
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1, ensure_ascii=False), encoding="utf-8")


def forget_earlier_results(folder: Path) -> None:
    """Remove what ``--resume`` would read in an evaluation's folder (a fresh run)."""
    for pattern in (RESULT_FILE, f"*{PARTIAL_SUFFIX}", f"*{GENERATED_SUFFIX}"):
        for path in folder.glob(pattern):
            path.unlink()


def save_result(result: EvaluationResult, seconds: float, folder: Path) -> None:
    """A finished evaluation's result, for ``--resume``; its generated-outputs files go (the
    outputs are in the samples)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {**dataclasses.asdict(result), "seconds": seconds}
    (folder / RESULT_FILE).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for path in folder.glob(f"*{GENERATED_SUFFIX}"):
        path.unlink()


def read_result(folder: Path) -> tuple[EvaluationResult, float]:
    """The result :func:`save_result` wrote, and its seconds."""
    data = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    seconds = data.pop("seconds")
    return EvaluationResult(**data), seconds


def default_template(model: str, template: Optional[str], paper: bool) -> tuple[Template, str]:
    """The template of evaluations without one of their own, and why: ``--template``, else the
    model folder's ``run.json``, else ``alpaca_official`` in paper mode (a folder without a
    record, such as released x-LLaMA weights, was trained in the paper's prompt), else
    ``alpaca``."""
    if template is not None:
        return check_template(template, "--template"), "--template"
    found = folder_template(model)
    if found is not None:
        return found, f"{model}/{RUN_RECORD_FILE}"
    if paper:
        return "alpaca_official", (
            f"paper mode: {model} has no {RUN_RECORD_FILE} naming a template and no --template "
            "was given, so the paper's own prompt (x-LLM train.py PROMPT_DICT) is used"
        )
    return "alpaca", f"the default: {model} has no {RUN_RECORD_FILE} naming a template"


def evaluate(
    model: str,
    evaluations: Optional[list[EvaluationCallback]] = None,
    paper: Optional[PaperBenchmarks] = None,
    output_dir: str = "evaluation",
    template: Optional[Template] = None,
    device: Optional[str] = None,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    language_modules: Optional[list[str]] = None,
    resume: bool = False,
) -> dict:
    """Evaluate a Hugging Face model folder (or hub name) and write a JSON and a markdown report.

    Args:
        model: the model folder (config, weights, tokenizer), e.g. an ``HFExport`` output.
        evaluations: evaluation callbacks, as in a training config's ``trainer.callbacks``
            (``class_path`` + ``init_args``); their names must differ.
        paper: the paper's benchmarks for a list of languages (``--paper.languages [zh,ar]``,
            ``--paper.flores_dir``, ``--paper.xquad_dir``, ``--paper.mlqa_dir``, the metric
            models, a judge endpoint): their evaluations are added, and ``paper_table.md`` and
            ``paper_table.json`` written, one row per language, with the metric signatures.
        output_dir: where ``report.json``, ``report.md`` and each evaluation's outputs go.
        template: prompt template of every evaluation without a ``template`` of its own:
            ``alpaca``, ``alpaca_official`` or ``chat``; default: the ``template`` in the model
            folder's ``run.json`` (the one the model was trained with), else ``alpaca_official``
            with ``paper`` (the paper's models, e.g. the released x-LLaMA weights, have no
            ``run.json`` and were trained in it), else ``alpaca``.
        device: ``cpu``, ``cuda``, ``cuda:1``...; default: the first GPU if there is one.
        dtype: weights' dtype (``bfloat16`` for a 7B model on a GPU).
        attn_implementation: ``sdpa``, ``eager`` or ``flash_attention_2``.
        trust_remote_code: allow model code from the hub; off unless you trust the source.
        language_modules: modules to import first, for the languages they register (as a data
            module's ``language_modules``; the demo's: ``[lightning_xllama.demo.languages]``);
            default: the ``language_modules`` of the model folder's ``run.json``, if any.
        resume: reuse what an earlier run with the same settings left in ``output_dir``
            (refused when its ``settings.json`` differs): finished evaluations are read from
            their ``result.json``, a set stopped midway generates only the rows missing from
            its ``{set}.partial.jsonl``.
    """
    from transformers import AutoModelForCausalLM

    check_model_path(model)
    evaluations = list(evaluations or []) + (paper.evaluations() if paper is not None else [])
    if not evaluations:
        raise ValueError("nothing to evaluate: give at least one evaluation (see --help)")
    names = [evaluation.name for evaluation in evaluations]
    if len(set(names)) != len(names):
        raise ValueError(
            f"evaluation names must differ (they name the report sections and files), got {names}"
        )
    settings = {"model": model, "dtype": dtype, "attn_implementation": attn_implementation}
    settings["evaluations"] = [evaluation_settings(e) for e in evaluations]
    template, source = default_template(model, template, paper is not None)
    settings["template"] = template
    print(f"prompts in the {template!r} template ({source})")
    if language_modules is None and Path(model, RUN_RECORD_FILE).is_file():
        language_modules = read_run_record(model).get("language_modules")
    import_language_modules(language_modules or [])
    for evaluation in evaluations:  # every data file is checked before the model is loaded
        evaluation.use_model_template(template, source)
        evaluation.prepare()
    check_resume(Path(output_dir), settings, resume)  # before the model is loaded
    if not resume:
        for evaluation in evaluations:
            forget_earlier_results(Path(output_dir, evaluation.name))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model, trust_remote_code)
    chat = [e.name for e in evaluations if e.prompt_template == "chat"]
    if chat and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"evaluations {chat} prompt in the 'chat' template, but the tokenizer of {model} has "
            "no chat template (tokenizer_config.json: chat_template); give --template alpaca or "
            "alpaca_official, or the template the model was trained with"
        )
    network = AutoModelForCausalLM.from_pretrained(
        model,
        dtype=DTYPES[dtype],
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    ).to(device)
    network.eval()

    out = Path(output_dir)
    started = time.time()
    report = {
        "model": model,
        "device": device,
        "dtype": dtype,
        "template": {"template": template, "source": source},
        "templates": {
            e.name: {"template": e.prompt_template, "source": e.template_source}
            for e in evaluations
        },
        "metrics": {},
        "details": {},
        "seconds": {},
    }
    sections = []
    for evaluation in evaluations:
        folder = out / evaluation.name
        if resume and (folder / RESULT_FILE).is_file():
            result, seconds = read_result(folder)
            print(f"{evaluation.name}: finished before, scores read from {folder / RESULT_FILE}")
        else:
            if isinstance(evaluation, GenerationEvaluation):
                evaluation.keep_outputs_in(folder, resume)
            start = time.perf_counter()
            result = evaluation.run(network, tokenizer)
            seconds = round(time.perf_counter() - start, 2)
            save_result(result, seconds, folder)
        files = evaluation.write_outputs(result, folder, tag="")
        report["seconds"][evaluation.name] = seconds
        report["metrics"].update(result.metrics)
        report["details"][evaluation.name] = result.details
        heading = f"## {evaluation.name} ({type(evaluation).__name__})"
        sections.append(f"{heading}\n\n{evaluation.markdown(result, files, out)}")
        print(
            f"{evaluation.name}: {len(result.metrics)} scores in {report['seconds'][evaluation.name]} s"
        )
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    (out / "report.json").write_text(
        json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    header = (
        f"# Evaluation of `{model}`\n\n{report['finished']}, {device}, {dtype}, "
        f"{time.time() - started:.1f} s. Scores are percentages (0-100) except COMET (as the model "
        "gives it) and the probe (cosines, retrieval shares).\n\n"
        f"Prompts in the `{template}` template unless an evaluation has its own ({source}).\n\n"
    )
    (out / "report.md").write_text(header + "\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"report written to {out / 'report.md'} and {out / 'report.json'}")
    if paper is not None:
        write_paper_table(paper_table(report, paper.languages), out)
        print(
            f"the paper's table written to {out / 'paper_table.md'}, paper_table.json and "
            "paper_table.png"
        )
    return report
