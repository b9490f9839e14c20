"""``python -m lightning_xllama evaluate``: score any Hugging Face model folder, outside training.

The evaluations are the training callbacks themselves (:class:`TranslationEvaluation`,
:class:`QAEvaluation`, :class:`RepresentationProbe`, or your own
:class:`~lightning_xllama.callbacks.EvaluationCallback`), configured with the same keys, and run
through the same ``prepare``/``run`` code, so a baseline and a finished run are measured exactly as
the validation passes measured the run. Results go to ``report.json`` (every score, signature and
curve) and ``report.md`` (tables, samples, plots), next to every output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal, Optional

import torch

from lightning_xllama.callbacks import (
    EvaluationCallback,  # imports every evaluation class: short names resolve
)
from lightning_xllama.hf_loading import check_model_path, load_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def evaluate(
    model: str,
    evaluations: list[EvaluationCallback],
    output_dir: str = "evaluation",
    device: Optional[str] = None,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
) -> dict:
    """Evaluate a Hugging Face model folder (or hub name) and write a JSON and a markdown report.

    Args:
        model: the model folder (config, weights, tokenizer), e.g. an ``HFExport`` output.
        evaluations: evaluation callbacks, as in a training config's ``trainer.callbacks``
            (``class_path`` + ``init_args``); their names must differ.
        output_dir: where ``report.json``, ``report.md`` and each evaluation's outputs go.
        device: ``cpu``, ``cuda``, ``cuda:1``...; default: the first GPU if there is one.
        dtype: weights' dtype (``bfloat16`` for a 7B model on a GPU).
        attn_implementation: ``sdpa``, ``eager`` or ``flash_attention_2``.
        trust_remote_code: allow model code from the hub; off unless you trust the source.
    """
    from transformers import AutoModelForCausalLM

    check_model_path(model)
    if not evaluations:
        raise ValueError("nothing to evaluate: give at least one evaluation (see --help)")
    names = [evaluation.name for evaluation in evaluations]
    if len(set(names)) != len(names):
        raise ValueError(
            f"evaluation names must differ (they name the report sections and files), got {names}"
        )
    for evaluation in evaluations:  # every data file is checked before the model is loaded
        evaluation.prepare()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model, trust_remote_code)
    network = AutoModelForCausalLM.from_pretrained(
        model,
        dtype=DTYPES[dtype],
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    ).to(device)
    network.eval()

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = {
        "model": model,
        "device": device,
        "dtype": dtype,
        "metrics": {},
        "details": {},
        "seconds": {},
    }
    sections = []
    for evaluation in evaluations:
        start = time.perf_counter()
        result = evaluation.run(network, tokenizer)
        files = evaluation.write_outputs(result, out / evaluation.name, tag="")
        report["seconds"][evaluation.name] = round(time.perf_counter() - start, 2)
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
    )
    (out / "report.md").write_text(header + "\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"report written to {out / 'report.md'} and {out / 'report.json'}")
    return report
