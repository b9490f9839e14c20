"""Training runs over target languages x parallel-data sizes: the points a scaling law is fitted to.

Each run instruction-tunes the same base model on a CoIT mixture (English instructions, the
same instructions translated, and the first ``n`` parallel pairs), either for a fixed number of
optimizer steps, so that runs differ only in how many distinct pairs they see, or for a fixed
number of epochs over each run's own data, so that more pairs mean more learning; then scores
translation on the held-out test set. Every run appends its scores to a results CSV that ``scaling fit`` reads;
runs already in the table are skipped, so an interrupted sweep continues where it stopped.

The data folder has the layout ``prepare-demo`` writes
(:class:`~lightning_xllama.demo.layout.DataLayout`), which real data can be put in as well.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Optional, Sequence

import lightning as L

from lightning_xllama.callbacks import (
    MetricsSummary,
    QAEvaluation,
    RepresentationProbe,
    TranslationEvaluation,
)
from lightning_xllama.data import CoITDataModule, MuITDataModule
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.languages import get_language
from lightning_xllama.scaling.results import append_results, finished_runs
from lightning_xllama.training.module import XLlamaModule

SWEEP_METRICS = ("chrf_pp", "bleu", "exact_match")
"""Translation metrics a sweep writes to the results table, one row each."""


def corpus_lines(data_dir: str | Path, language: str) -> int:
    """Pairs in ``language``'s training corpus; both sides must exist and have as many lines."""
    source = DataLayout(data_dir).parallel(language)
    counts = {}
    for side in ("en", language):
        path = source.with_suffix(f".{side}")
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no parallel corpus for {language!r} (prepare-demo writes one)"
            )
        with path.open("rb") as handle:  # lines end at b"\n" only, as the corpus reader splits them
            counts[side] = sum(1 for _ in handle)
    if counts["en"] != counts[language]:
        raise ValueError(
            f"{source}.en has {counts['en']} lines but {source}.{language} has {counts[language]}"
        )
    return counts["en"]


def subset_pairs(data_dir: str | Path, language: str, pairs: int, out_dir: str | Path) -> str:
    """Write the first ``pairs`` training pairs of ``language`` to ``out_dir``; return the prefix.

    Raises a ValueError naming the corpus when it holds fewer pairs than asked for.
    """
    available = corpus_lines(data_dir, language)
    source = DataLayout(data_dir).parallel(language)
    if pairs < 1 or pairs > available:
        raise ValueError(
            f"{source}: asked for {pairs} pairs; the corpus holds {available} (ask for 1 to {available})"
        )
    prefix = Path(out_dir) / f"en-{language}.{pairs}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for side in ("en", language):
        with source.with_suffix(f".{side}").open("rb") as handle:
            lines = list(itertools.islice(handle, pairs))
        if not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        Path(f"{prefix}.{side}").write_bytes(b"".join(lines))
    return str(prefix)


def check_inputs(
    data_dir: str | Path, languages: Sequence[str], sizes: Sequence[int], qa: bool = False
) -> None:
    """Fail before any training when a language is unknown, a file is missing or a size is
    larger than its corpus."""
    data = DataLayout(data_dir)
    for lang in languages:
        get_language(lang)
        missing = [str(path) for path in data.required(lang, qa) if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"missing input(s) for {lang!r}: {missing} (see the layout in lightning_xllama/demo/layout.py)"
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
    """Logged name of a translation score from :func:`evaluation_callbacks`."""
    return f"val/{translation_name(language, multilingual)}/en-{language}/{metric}"


def evaluation_callbacks(
    data_dir: str | Path,
    languages: Sequence[str],
    eval_samples: int = 100,
    qa: bool = False,
    probe: bool = False,
    before_training: bool = False,
) -> list[L.Callback]:
    """Translation scores for each language (and optionally QA for each and the layer probe for
    the first), measured at the end of training, and before it with ``before_training``. Score
    names: :func:`translation_key`."""
    data = DataLayout(data_dir)
    callbacks: list[L.Callback] = []
    for lang in languages:
        callbacks.append(
            TranslationEvaluation(
                directions=[f"en-{lang}"],
                test_prefix=str(data.translation_test(lang)),
                name=translation_name(lang, multilingual=len(languages) > 1),
                max_samples=eval_samples,
                batch_size=50,
                max_new_tokens=40,
                before_training=before_training,
                write_samples=False,
            )
        )
    if qa:
        callbacks.append(
            QAEvaluation(
                files={lang: str(data.qa(lang)) for lang in languages},
                prompt_style="question",
                max_samples=eval_samples,
                batch_size=50,
                max_new_tokens=12,
                before_training=before_training,
            )
        )
    if probe:
        test_prefix = str(data.translation_test(languages[0]))
        callbacks.append(
            RepresentationProbe(
                test_prefix=test_prefix,
                directions=[f"en-{languages[0]}"],
                num_sentences=64,
                batch_size=32,
                before_training=before_training,
            )
        )
    return callbacks


def train_and_evaluate(
    base_model: str,
    datamodule: MuITDataModule,
    callbacks: list[L.Callback],
    root: str | Path,
    max_steps: int = 500,
    learning_rate: float = 1e-3,
    seed: int = 0,
    max_epochs: int = -1,
) -> dict[str, dict[str, tuple[int, float]]]:
    """Fit ``base_model`` for ``max_steps`` (or ``max_epochs`` with ``max_steps=-1``) on one CPU
    process; return the first and last ``(step, value)`` of every validation metric the callbacks
    log (``{"first": ..., "last": ...}``) and the steps trained (``"steps"``)."""
    L.seed_everything(seed, verbose=False)
    summary = MetricsSummary(exclude=())  # per-layer probe values included
    model = XLlamaModule(
        base_model, learning_rate=learning_rate, warmup_ratio=0.03, max_new_tokens=40
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=max_steps,
        max_epochs=max_epochs,
        gradient_clip_val=1.0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=25,
        logger=L.pytorch.loggers.CSVLogger(str(root), name="", version=""),
        default_root_dir=str(root),
        callbacks=[*callbacks, summary],
        limit_val_batches=2,
    )
    trainer.fit(model, datamodule=datamodule)
    return {"first": dict(summary.first), "last": dict(summary.last), "steps": trainer.global_step}


def coit_datamodule(
    data_dir: str | Path,
    language: str,
    parallel: str,
    max_steps: Optional[int],
    batch_size: int = 16,
    weights: Optional[dict[str, float]] = None,
    seed: int = 0,
    tokenizer: Optional[str] = None,
    **options,
) -> CoITDataModule:
    """The CoIT mixture of one language with an epoch of exactly ``max_steps`` batches, so a run
    sees each stream's weighted share once and a small parallel file is repeated; with
    ``max_steps`` None, an epoch is every example once (instructions and pairs, no weights).
    ``options`` go to :class:`CoITDataModule` (``template``, ``batching``, ...)."""
    data = DataLayout(data_dir)
    if max_steps is None:
        mixing: dict = {}
    else:
        mixing = {
            "weights": weights or {"english": 1.0, "translated": 1.0, "parallel": 3.0},
            "stop": "total",
            "examples_per_epoch": max_steps * batch_size,
        }
    return CoITDataModule(
        language=language,
        english_instructions=str(data.instructions("en")),
        translated_instructions=str(data.instructions(language)),
        parallel=parallel,
        **mixing,
        batch_size=batch_size,
        seed=seed,
        tokenizer=tokenizer,
        **{"max_length": 256, "val_examples_per_stream": 16, **options},
    )


def run_name(language: str, pairs: int, steps: int, seed: int, epochs: Optional[int] = None) -> str:
    """A run's name in the results table and its log folder; a sweep skips names it finds there."""
    length = f"{epochs}epochs" if epochs is not None else f"{steps}steps"
    return f"{language}-{pairs}pairs-{length}-seed{seed}"


def sweep(
    results: str,
    languages: list[str],
    sizes: list[int],
    data_dir: str = "artifacts/demo/data",
    base_model: str = "artifacts/demo/base_model",
    out: str = "artifacts/sweep",
    seeds: Optional[list[int]] = None,
    max_steps: int = 800,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    weights: Optional[dict[str, float]] = None,
    eval_samples: int = 100,
    epochs: Optional[int] = None,
) -> list[dict]:
    """Train a CoIT model per language x pair count x seed; append translation scores to a CSV.

    The CSV is what `scaling fit` reads.

    Args:
        results: CSV to append to (columns language, pairs, metric, score, seed, steps, subset,
            run, seconds). A run whose name (language,
            the subset size asked for, steps or ``{E}epochs``, seed) is already in it is skipped: use a new file when changing other
            settings (learning rate, batch size, weights, base model, data).
        languages: target language codes; each needs the files of the data layout (lightning_xllama/demo/layout.py).
        sizes: numbers of distinct parallel pairs (the first n of the training corpus; the
            validation loss holds out min(16, n/10) of them, and ``pairs`` records the rest).
        data_dir: data folder in the layout ``prepare-demo`` writes.
        base_model: Hugging Face folder every run starts from.
        out: where the pair subsets and each run's logs go.
        seeds: seeds of the data order, the held-out split and the paraphrases; one run each.
        max_steps: optimizer steps of every run, whatever its number of pairs (without
            ``epochs``): runs differ only in how many distinct pairs they see.
        epochs: instead of ``max_steps``, passes over each run's own data (every instruction
            and pair once a pass, no weights), so a run with more pairs trains longer: the
            paper's data scale, where more pairs means more learning.
        batch_size: examples per step.
        learning_rate: peak AdamW learning rate.
        weights: shares of the english, translated and parallel streams (default 1, 1, 3;
            with ``max_steps`` only).
        eval_samples: test sentences scored per run.

    Returns:
        The rows appended.
    """
    if epochs is not None and (epochs < 1 or weights is not None):
        raise ValueError(
            f"epochs must be a whole number >= 1 and comes without weights (every example once a "
            f"pass), got epochs={epochs}, weights={weights}"
        )
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be positive numbers of pairs, got {sizes}")
    check_inputs(data_dir, languages, sizes)
    results_path, root = Path(results), Path(out)
    done = finished_runs(results_path)
    appended: list[dict] = []
    for seed in seeds or [0]:
        for lang in languages:
            for n in sizes:
                run = run_name(lang, n, max_steps, seed, epochs)
                if run in done:
                    print(f"skipping {run}: already in {results_path}")
                    continue
                parallel = subset_pairs(data_dir, lang, n, root / "pairs")
                datamodule = coit_datamodule(
                    data_dir,
                    lang,
                    parallel,
                    None if epochs else max_steps,
                    batch_size,
                    weights,
                    seed,
                    base_model,
                )
                start = time.perf_counter()
                summary = train_and_evaluate(
                    base_model,
                    datamodule,
                    evaluation_callbacks(data_dir, [lang], eval_samples),
                    root / "runs" / run,
                    -1 if epochs else max_steps,
                    learning_rate,
                    seed,
                    epochs or -1,
                )
                seconds = round(time.perf_counter() - start, 1)
                trained = datamodule.readers[
                    -1
                ].size  # the parallel stream, less its held-out pairs
                rows = []
                for metric in SWEEP_METRICS:
                    key = translation_key(lang, metric)
                    if key not in summary["last"]:
                        raise RuntimeError(
                            f"run {run} ({root / 'runs' / run}) logged no {key}; it logged {sorted(summary['last'])}"
                        )
                    rows.append(
                        {
                            "language": lang,
                            "pairs": trained,
                            "metric": metric,
                            "score": round(summary["last"][key][1], 4),
                            "seed": seed,
                            "steps": summary["steps"],
                            "subset": n,
                            "run": run,
                            "seconds": seconds,
                        }
                    )
                append_results(results_path, rows)
                appended += rows
                chrf = summary["last"][translation_key(lang, "chrf_pp")][1]
                print(
                    f"{run}: chrF++ {chrf:.1f} after training on {trained} pairs, {seconds:.0f} s -> {results_path}"
                )
    return appended
