"""Training runs over target languages x parallel-data sizes: the points a scaling law is fitted to.

Each run is a ``fit`` built by the command line's own :class:`~lightning_xllama.commands.fit.XLlamaCLI`
from a base ``fit`` config plus the few settings the sweep varies: the parallel corpus (its first
``n`` pairs, written to a file the data module reads as ``parallel``), the seed, the run folder
and, when the sweep sets them, the steps or epochs. Everything else (model, strategy, precision,
devices, lengths, mixture, evaluation callbacks) is the config's, so a sweep runs wherever and
however ``fit`` does. The run's score is what its evaluation callbacks logged
(``val/translation/en-{language}/chrf_pp`` by default), read back from its ``run.json``; every
run appends its scores to a results CSV that ``scaling fit`` reads, and runs already in the table
are skipped, so an interrupted sweep continues where it stopped.

Without a base config the sweep writes one per language from a data folder in the layout
``prepare-demo`` writes (:class:`~lightning_xllama.data.layout.DataLayout`, which real data can be
put in as well): CPU, fp32, one process, ``max_length`` 256, translation scored on the layout's
test set (:func:`layout_config`).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import lightning as L
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only

from lightning_xllama.commands.fit import XLlamaCLI, fit_config_parser
from lightning_xllama.data.layout import DataLayout
from lightning_xllama.languages import get_language, import_language_modules
from lightning_xllama.runtime.run_record import read_run_record
from lightning_xllama.scaling.results import append_results, finished_runs

SWEEP_METRICS = ("chrf_pp", "bleu", "exact_match")
"""Translation metrics a sweep writes to the results table by default, one row each."""
SCORE_KEY = "val/translation/en-{language}/{metric}"
"""Where a run's scores are by default: the logged name of :class:`TranslationEvaluation`'s
scores (named ``translation``), ``{language}`` and ``{metric}`` filled per row."""
DEFAULT_STEPS = 800
"""Optimizer steps of a run of the layout's config when neither steps nor epochs are given."""
LAYOUT_DEFAULTS = {
    "data_dir": "artifacts/demo/data",
    "base_model": "artifacts/demo/base_model",
    "batch_size": 16,
    "learning_rate": 1e-3,
    "eval_samples": 100,
}
"""The settings of the config written from a data folder, when not given (the demo's)."""
CONFIG_KEYS = {
    "data_dir": "the data paths (data.init_args) and the test sets of its evaluation callbacks",
    "base_model": "model.init_args.model_name_or_path",
    "batch_size": "data.init_args.batch_size",
    "learning_rate": "model.init_args.learning_rate",
    "weights": "data.init_args.weights",
    "eval_samples": "max_samples of its evaluation callbacks (trainer.callbacks)",
    "language_modules": "data.init_args.language_modules",
}
"""Sweep arguments that only shape the config written from a data folder, and where a base
config holds the same setting instead."""


def corpus_lines(data_dir: str | Path, language: str) -> int:
    """Pairs in ``language``'s training corpus of a data folder (:func:`prefix_lines`)."""
    return prefix_lines(DataLayout(data_dir).parallel(language), language)


def prefix_lines(prefix: str | Path, language: str) -> int:
    """Pairs in the aligned corpus ``{prefix}.en`` / ``{prefix}.{language}``; both sides must
    exist and have as many lines."""
    source = Path(prefix)
    counts = {}
    for side in ("en", language):
        path = Path(f"{source}.{side}")
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no parallel corpus for {language!r} (the sweep subsets an aligned-text "
                f"prefix: PREFIX.en and PREFIX.{language}; prepare-demo writes one)"
            )
        with path.open("rb") as handle:  # lines end at b"\n" only, as the corpus reader splits them
            counts[side] = sum(1 for _ in handle)
    if counts["en"] != counts[language]:
        raise ValueError(
            f"{source}.en has {counts['en']} lines but {source}.{language} has {counts[language]}"
        )
    return counts["en"]


def subset_pairs(data_dir: str | Path, language: str, pairs: int, out_dir: str | Path) -> str:
    """Write the first ``pairs`` training pairs of ``language`` in a data folder to ``out_dir``;
    return the prefix (:func:`subset_corpus`)."""
    return subset_corpus(DataLayout(data_dir).parallel(language), language, pairs, out_dir)


def subset_corpus(prefix: str | Path, language: str, pairs: int, out_dir: str | Path) -> str:
    """Write the first ``pairs`` pairs of the corpus at ``prefix`` to
    ``{out_dir}/en-{language}.{pairs}.{en,language}``; return that prefix.

    Raises a ValueError naming the corpus when it holds fewer pairs than asked for.
    """
    available = prefix_lines(prefix, language)
    if pairs < 1 or pairs > available:
        raise ValueError(
            f"{prefix}: asked for {pairs} pairs; the corpus holds {available} (ask for 1 to {available})"
        )
    subset = Path(out_dir) / f"en-{language}.{pairs}"
    subset.parent.mkdir(parents=True, exist_ok=True)
    for side in ("en", language):
        with open(f"{prefix}.{side}", "rb") as handle:
            lines = list(itertools.islice(handle, pairs))
        if not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        _write_atomically(Path(f"{subset}.{side}"), b"".join(lines))
    return str(subset)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: the processes of a multi-device sweep all write the
    same files, and none may read one half written."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def check_inputs(
    data_dir: str | Path, languages: Sequence[str], sizes: Sequence[int], qa: bool = False
) -> None:
    """Fail before any training when a language is unknown, a file of the data folder is
    missing or a size is larger than its corpus."""
    data = DataLayout(data_dir)
    for lang in languages:
        try:
            get_language(lang)
        except KeyError as unknown:
            raise KeyError(
                f"{unknown.args[0]} (or name the module that registers it in language_modules: "
                "the demo's languages are lightning_xllama.demo.languages)"
            ) from None
        missing = [str(path) for path in data.required(lang, qa) if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"missing input(s) for {lang!r}: {missing} (see the layout in lightning_xllama/data/layout.py)"
            )
        available = corpus_lines(data.root, lang)
        if sizes and max(sizes) > available:
            raise ValueError(
                f"{data.parallel(lang)}: sizes up to {max(sizes)} asked for; "
                f"the corpus holds {available} pairs"
            )


def translation_name(language: str, multilingual: bool) -> str:
    """Name of the translation callback of ``language`` (one per language when several)."""
    return f"translation_{language}" if multilingual else "translation"


def translation_key(language: str, metric: str, multilingual: bool = False) -> str:
    """Logged name of a translation score of :func:`evaluation_callbacks`."""
    return f"val/{translation_name(language, multilingual)}/en-{language}/{metric}"


def evaluation_callbacks(
    data_dir: str | Path,
    languages: Sequence[str],
    eval_samples: int = 100,
    qa: bool = False,
    probe: bool = False,
    before_training: bool = False,
) -> list[dict]:
    """The ``trainer.callbacks`` entries of a config (``class_path`` and ``init_args``):
    translation scores for each language on a data folder's test sets (and optionally QA for
    each and the layer probe for the first), measured on validation passes, and before training
    with ``before_training``. Score names: :func:`translation_key`."""
    data = DataLayout(data_dir)
    callbacks: list[dict] = []
    for lang in languages:
        callbacks.append(
            _callback(
                "TranslationEvaluation",
                directions=[f"en-{lang}"],
                test_prefix=str(data.translation_test(lang)),
                name=translation_name(lang, multilingual=len(languages) > 1),
                max_samples=eval_samples,
                generation={"batch_size": 50, "max_new_tokens": 40},
                before_training=before_training,
                write_samples=False,
            )
        )
    if qa:
        callbacks.append(
            _callback(
                "QAEvaluation",
                files={lang: str(data.qa(lang)) for lang in languages},
                prompt_style="question",
                max_samples=eval_samples,
                generation={"batch_size": 50, "max_new_tokens": 12},
                before_training=before_training,
            )
        )
    if probe:
        callbacks.append(
            _callback(
                "RepresentationProbe",
                test_prefix=str(data.translation_test(languages[0])),
                directions=[f"en-{languages[0]}"],
                num_sentences=64,
                batch_size=32,
                before_training=before_training,
            )
        )
    return callbacks


def _callback(class_name: str, **init_args) -> dict:
    return {"class_path": f"lightning_xllama.callbacks.{class_name}", "init_args": init_args}


def layout_config(
    data_dir: str | Path,
    language: str,
    base_model: str,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    eval_samples: int = 100,
    weights: Optional[dict[str, float]] = None,
    examples_per_epoch: Optional[int] = None,
    language_modules: Optional[list[str]] = None,
    callbacks: Optional[list[dict]] = None,
    **data_options,
) -> dict:
    """A ``fit`` config (as a dict) training a CoIT model of ``language`` on a data folder
    (:func:`cpu_config`): ``max_length`` 256, 16 held-out examples a stream, and ``callbacks``
    (default: translation scored on the layout's test set, see :func:`evaluation_callbacks`).

    With ``examples_per_epoch``, an epoch is that many examples drawn by ``weights`` (default
    english 1, translated 1, parallel 3) under the ``total`` rule, so a small parallel file is
    repeated; without, every example once an epoch (instructions and pairs, no weights).
    ``data_options`` are further ``init_args`` of :class:`CoITDataModule` (``template``, ...)."""
    data = DataLayout(data_dir)
    mixing: dict = {}
    if examples_per_epoch is not None:
        mixing = {
            "weights": weights or {"english": 1.0, "translated": 1.0, "parallel": 3.0},
            "stop": "total",
            "examples_per_epoch": examples_per_epoch,
        }
    if callbacks is None:
        callbacks = evaluation_callbacks(data_dir, [language], eval_samples)
    coit = {
        "class_path": "lightning_xllama.data.CoITDataModule",
        "init_args": {
            "language": language,
            "english_instructions": str(data.instructions("en")),
            "translated_instructions": str(data.instructions(language)),
            "parallel": str(data.parallel(language)),
            **mixing,
            "batch_size": batch_size,
            "max_length": 256,
            "val_examples_per_stream": 16,
            "language_modules": list(language_modules or []),
            **data_options,
        },
    }
    return cpu_config(base_model, coit, callbacks, learning_rate)


def cpu_config(
    base_model: str, data: dict, callbacks: list[dict], learning_rate: float = 1e-3
) -> dict:
    """A ``fit`` config (as a dict) of ``data`` (its ``class_path`` and ``init_args``): one CPU
    process in fp32 from ``base_model``, warm-up 3%, gradient clipping at 1, no checkpoints,
    generation up to 40 tokens, 2 validation-loss batches, and ``callbacks`` followed by a
    :class:`MetricsSummary` of every ``val/`` metric (``summary.json`` in the log folder)."""
    return {
        "seed_everything": 0,
        "model": {
            "class_path": "lightning_xllama.model.XLlamaModule",
            "init_args": {
                "model_name_or_path": str(base_model),
                "learning_rate": learning_rate,
                "warmup_ratio": 0.03,
                "max_new_tokens": 40,
            },
        },
        "data": data,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "gradient_clip_val": 1.0,
            "num_sanity_val_steps": 0,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 25,
            "limit_val_batches": 2,
            "callbacks": [
                *callbacks,
                {
                    "class_path": "lightning_xllama.callbacks.MetricsSummary",
                    "init_args": {"exclude": []},  # per-layer probe values included
                },
            ],
        },
    }


def write_config(config: dict, path: str | Path) -> str:
    """Write a config dict as YAML (folders made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, yaml.safe_dump(config, sort_keys=False).encode())
    return str(path)


def _config_args(configs: Sequence[str | Path]) -> list[str]:
    return [arg for path in configs for arg in ("--config", str(path))]


def read_fit_config(configs: Sequence[str | Path], overrides: Sequence[str] = ()):
    """The settings ``fit --config C1 --config C2 ... OVERRIDES`` would run with (a jsonargparse
    namespace: ``.data.init_args.parallel``, ``.trainer.accumulate_grad_batches``...)."""
    return fit_config_parser().parse_args([*_config_args(configs), *overrides])


def fit_run(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> L.Trainer:
    """Run ``python -m lightning_xllama fit --config C1 ... OVERRIDES`` in this process, as the
    command line does (:class:`XLlamaCLI`); return its trainer, whose ``log_dir`` holds
    ``run.json``, ``config.yaml``, the metrics and, with a :class:`MetricsSummary`,
    ``summary.json``.

    With several devices every process runs the same calls in the same order (the processes
    Lightning launches run the whole command again), each fit joining the same process group."""
    return XLlamaCLI(args=["fit", *_config_args(configs), *overrides]).trainer


def trained_pairs(record: dict, language: str) -> int:
    """Pairs the run trained on, from its ``run.json``: the ``language`` parallel stream's usable
    pairs less those held out for the validation loss."""
    plan = record.get("data_plan") or {}
    names = [
        s["name"]
        for s in plan.get("streams") or []
        if s.get("kind") == "parallel" and s.get("lang") == language
    ]
    if len(names) != 1:
        raise ValueError(
            f"{record.get('log_dir')}/run.json: expected one parallel stream of {language!r} in "
            f"the data plan, found {names}"
        )
    report = {s["name"]: s for s in (record.get("data_report") or {}).get("streams") or []}
    if names[0] not in report:
        raise ValueError(f"{record.get('log_dir')}/run.json: no data report of {names[0]}")
    stream = report[names[0]]
    return int(stream["usable"]) - int(stream["held_out"])


def run_name(
    language: str,
    pairs: int,
    steps: Optional[int],
    seed: int,
    epochs: Optional[int] = None,
) -> str:
    """A run's name in the results table and its folder; a sweep skips names it finds there.
    With neither ``steps`` nor ``epochs`` (the config's own length) it names neither."""
    if epochs is not None:
        length = f"-{epochs}epochs"
    elif steps is not None:
        length = f"-{steps}steps"
    else:
        length = ""
    return f"{language}-{pairs}pairs{length}-seed{seed}"


def _config_stack(fit_config: Union[list[str], str], language: str) -> list[str]:
    """The config files of ``language``'s runs: ``{language}`` in a path is its code."""
    paths = [fit_config] if isinstance(fit_config, str) else list(fit_config)
    stack = [path.replace("{language}", language) for path in paths]
    for path in stack:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"fit_config {path!r}: no such file (a list of files is given as "
                "'[base.yaml, \"per_language/{language}.yaml\"]', each path holding {language} "
                "quoted)"
            )
    return stack


def length_overrides(
    max_steps: Optional[int], epochs: Optional[int], accumulate: int = 1
) -> list[str]:
    """The ``fit`` flags of a run's length, validated once, at its end (a run is scored by its
    last validation): ``max_steps`` optimizer steps whatever the epoch's length (``accumulate``:
    the config's gradient accumulation), or ``epochs`` passes; neither: none (the config's)."""
    if epochs is not None:
        return [
            f"--trainer.max_epochs={epochs}",
            "--trainer.max_steps=-1",
            f"--trainer.check_val_every_n_epoch={epochs}",
        ]
    if max_steps is not None:
        return [
            f"--trainer.max_steps={max_steps}",
            "--trainer.max_epochs=-1",
            f"--trainer.val_check_interval={max_steps * accumulate}",
            "--trainer.check_val_every_n_epoch=null",
        ]
    return []


def sweep(
    results: str,
    languages: list[str],
    sizes: list[int],
    data_dir: Optional[str] = None,
    base_model: Optional[str] = None,
    out: str = "artifacts/sweep",
    seeds: Optional[list[int]] = None,
    max_steps: Optional[int] = None,
    batch_size: Optional[int] = None,
    learning_rate: Optional[float] = None,
    weights: Optional[dict[str, float]] = None,
    eval_samples: Optional[int] = None,
    epochs: Optional[int] = None,
    fit_config: Optional[Union[list[str], str]] = None,
    language_modules: Optional[list[str]] = None,
    score_key: str = SCORE_KEY,
    metrics: Optional[list[str]] = None,
) -> list[dict]:
    """Run ``fit`` per language x pair count x seed; append each run's scores to a CSV.

    The CSV is what `scaling fit` reads.

    Args:
        results: CSV to append to (columns language, pairs, metric, score, seed, steps, subset,
            run, seconds). A run whose name (language, the subset size asked for, steps or
            ``{E}epochs``, seed) is already in it is skipped: use a new file when changing other
            settings (the config, learning rate, batch size, weights, base model, data).
        languages: target language codes.
        sizes: numbers of distinct parallel pairs (the first n of the config's parallel corpus;
            the validation loss holds out some of them, and ``pairs`` records the rest).
        data_dir: without ``fit_config``: a data folder in the layout ``prepare-demo`` writes
            (lightning_xllama/data/layout.py), from which each language's config is written to
            ``{out}/configs/{language}.yaml`` (default artifacts/demo/data).
        base_model: without ``fit_config``: the Hugging Face folder every run starts from
            (default artifacts/demo/base_model).
        out: where the pair subsets (``pairs/``), each run's folder (``runs/{run}``, the
            trainer's ``default_root_dir``) and the configs written from ``data_dir`` go.
        seeds: seeds of the run (``seed_everything``) and of its data (order, held-out split,
            paraphrases); one run each (default [0]).
        max_steps: optimizer steps of every run, whatever its number of pairs: runs differ only
            in how many distinct pairs they see, scored after the last step (the default without
            ``fit_config`` and ``epochs``: 800; with ``fit_config``: the config's length).
        batch_size: without ``fit_config``: examples per step (default 16).
        learning_rate: without ``fit_config``: peak AdamW learning rate (default 1e-3).
        weights: without ``fit_config``: shares of the english, translated and parallel streams
            with ``max_steps`` (default 1, 1, 3; an epoch is ``max_steps`` batches).
        eval_samples: without ``fit_config``: test sentences scored per run (default 100).
        epochs: instead of ``max_steps``, passes over each run's own data (without
            ``fit_config``: every instruction and pair once a pass, no weights; with one: its
            mixture), so a run with more pairs trains longer: the paper's data scale.
        fit_config: the base ``fit`` config of every run (a path, or a list of paths stacked as
            repeated ``--config``); ``{language}`` in a path is the run's language, e.g.
            ``[configs/base.yaml, "configs/sweep/{language}.yaml"]``. Model, strategy,
            precision, devices, lengths, mixture and evaluation callbacks are the config's; its
            data module (``CoITDataModule`` or a subclass) must train ``language``, and its
            ``parallel`` corpus (an aligned-text prefix) is what each run takes the first pairs
            of. The sweep sets only ``data.init_args.parallel`` (the subset),
            ``data.init_args.seed``, ``seed_everything``, ``trainer.default_root_dir`` and, when
            given, the steps or epochs.
        language_modules: without ``fit_config``: modules that register the languages (the
            demo's: ``[lightning_xllama.demo.languages]``).
        score_key: the logged metric each row's score is read from (the run's latest value, in
            its ``run.json``), ``{language}`` and ``{metric}`` filled in; e.g.
            ``val/flores/en-{language}/{metric}`` for a callback named ``flores``.
        metrics: the metrics written, one row each (default chrf_pp, bleu, exact_match).

    Returns:
        The rows appended.
    """
    given = {
        "data_dir": data_dir,
        "base_model": base_model,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weights": weights,
        "eval_samples": eval_samples,
        "language_modules": language_modules,
    }
    if fit_config is not None:
        clash = {name: CONFIG_KEYS[name] for name, value in given.items() if value is not None}
        if clash:
            raise ValueError(
                "with fit_config, these settings are the config's: "
                + "; ".join(f"{name}: set {key}" for name, key in clash.items())
            )
    if epochs is not None and (epochs < 1 or weights is not None or max_steps is not None):
        raise ValueError(
            f"epochs must be a whole number >= 1 and comes without weights and max_steps (every "
            f"example once a pass), got epochs={epochs}, weights={weights}, max_steps={max_steps}"
        )
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be positive numbers of pairs, got {sizes}")
    root = Path(out)
    if fit_config is None:
        settings = {k: v if v is not None else LAYOUT_DEFAULTS.get(k) for k, v in given.items()}
        if max_steps is None and epochs is None:
            max_steps = DEFAULT_STEPS
        import_language_modules(settings["language_modules"] or [])
        check_inputs(settings["data_dir"], languages, sizes)
        stacks = {
            lang: [
                write_config(
                    layout_config(
                        settings["data_dir"],
                        lang,
                        settings["base_model"],
                        settings["batch_size"],
                        settings["learning_rate"],
                        settings["eval_samples"],
                        weights,
                        None if epochs else max_steps * settings["batch_size"],
                        settings["language_modules"],
                    ),
                    root / "configs" / f"{lang}.yaml",
                )
            ]
            for lang in languages
        }
    else:
        stacks = {lang: _config_stack(fit_config, lang) for lang in languages}
    sources = {lang: _check_config(stacks[lang], lang, sizes) for lang in languages}

    results_path = Path(results)
    done = finished_runs(results_path)
    appended: list[dict] = []
    for seed in seeds or [0]:
        for lang in languages:
            source, accumulate = sources[lang]
            for n in sizes:
                run = run_name(lang, n, max_steps, seed, epochs)
                if run in done:
                    if rank_zero_only.rank == 0:
                        print(f"skipping {run}: already in {results_path}")
                    continue
                overrides = [
                    f"--data.init_args.parallel={subset_corpus(source, lang, n, root / 'pairs')}",
                    f"--data.init_args.seed={seed}",
                    f"--seed_everything={seed}",
                    f"--trainer.default_root_dir={root / 'runs' / run}",
                    *length_overrides(max_steps, epochs, accumulate),
                ]
                start = time.perf_counter()
                trainer = fit_run(stacks[lang], overrides)
                seconds = round(time.perf_counter() - start, 1)
                log_dir = Path(trainer.log_dir)  # every process asks: rank 0's is broadcast
                if not trainer.is_global_zero:  # rank 0 reads run.json and writes the rows
                    continue
                rows = _rows(log_dir, lang, n, seed, run, seconds, score_key, metrics)
                append_results(results_path, rows)
                appended += rows
                print(
                    f"{run}: {rows[0]['metric']} {rows[0]['score']:.1f} after training on "
                    f"{rows[0]['pairs']} pairs, {seconds:.0f} s -> {results_path}"
                )
    return appended


def _check_config(stack: list[str], language: str, sizes: Sequence[int]) -> tuple[str, int]:
    """Before any training: the stack trains ``language`` with a parallel corpus holding the
    largest size; return that corpus and the config's gradient accumulation."""
    config = read_fit_config(stack)
    init = config.data.init_args
    where = " + ".join(stack)
    if "parallel" not in init or "language" not in init:
        raise ValueError(
            f"{where}: data is {config.data.class_path}; scaling sweep needs a data module with "
            "language and parallel (lightning_xllama.data.CoITDataModule or a subclass)"
        )
    import_language_modules(init.get("language_modules") or [])
    get_language(language)
    if init.language != language:
        raise ValueError(
            f"{where}: data.init_args.language is {init.language!r}, not {language!r}: give a "
            "config per language (a path holding {language} in fit_config)"
        )
    available = prefix_lines(init.parallel, language)
    if max(sizes) > available:
        raise ValueError(
            f"{init.parallel}: sizes up to {max(sizes)} asked for; the corpus holds {available} pairs"
        )
    accumulate = config.trainer.get("accumulate_grad_batches") or 1
    return init.parallel, int(accumulate)


def _rows(
    log_dir: Path,
    language: str,
    subset: int,
    seed: int,
    run: str,
    seconds: float,
    score_key: str,
    metrics: Optional[list[str]],
) -> list[dict]:
    """The results-table rows of a finished run, read from its ``run.json``."""
    record = read_run_record(log_dir)
    scores = record.get("evaluation") or {}
    pairs = trained_pairs(record, language)
    rows = []
    for metric in metrics or SWEEP_METRICS:
        key = score_key.replace("{language}", language).replace("{metric}", metric)
        if key not in scores:
            raise RuntimeError(
                f"run {run} ({log_dir}/run.json) logged no {key}; it logged {sorted(scores)} "
                "(set score_key to the name the config's evaluation callback logs)"
            )
        rows.append(
            {
                "language": language,
                "pairs": pairs,
                "metric": metric,
                "score": round(scores[key], 4),
                "seed": seed,
                "steps": record["global_step"],
                "subset": subset,
                "run": run,
                "seconds": seconds,
            }
        )
    return rows
