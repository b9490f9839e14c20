"""The runs of the reproduction: assets, sweeps with exposure proportional to the pairs, MuIT runs
through allocation files, and CoIT against English-only; every run cached and resumable.

Every run is a ``fit`` built by the command line's own CLI from a config written to its folder
(``runs/<name>/fit.yaml``) plus the seed, the steps and the pair subset as flags, the path of
``scaling sweep`` (:func:`lightning_xllama.commands.sweep.fit_run`), scored after its last step.
Every sweep and MuIT run trains ``epochs`` passes over its own data (instructions and pairs
alike), so a run with more pairs takes proportionally more steps and sees each pair as often as a
small one; the English-only control takes the CoIT run's steps (``deep_epochs`` passes over the
CoIT data), so the two differ in their data, not in their number of updates.

Processes share a study folder: a run is claimed (``runs/<name>.running``) while it trains, and
its rows are appended to a results CSV once (:func:`append_once`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reproduction.world import ScienceWorld

from lightning_xllama.commands.sweep import (
    cpu_config,
    evaluation_callbacks,
    fit_run,
    layout_config,
    length_overrides,
    subset_pairs,
    trained_pairs,
    translation_key,
    write_config,
)
from lightning_xllama.data.allocation import read_allocation
from lightning_xllama.data.layout import DataLayout
from lightning_xllama.demo.prepare import pretrain_base_model, tokenizer_corpus, train_tokenizer
from lightning_xllama.runtime.hf_loading import load_tokenizer
from lightning_xllama.runtime.run_record import read_run_record
from lightning_xllama.scaling.allocation import Allocation, write_allocation
from lightning_xllama.scaling.results import append_results, finished_runs

NEAR, FAR = "syn_near", "syn_far"
LANGUAGE_MODULE = "lightning_xllama.demo.languages"
"""The plug-in registering the study's languages, named in every run's config."""
LANGUAGES = (NEAR, FAR)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ message['content'] }}\n=>{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""The study's prompt: the instruction, its input and ``=>``. A training example averages 29
tokens in it against 69 in the Alpaca prompt (whose boilerplate is most of them), so a step
costs less than half as much; what the study measures does not depend on the prompt's wording."""


@dataclass(frozen=True)
class Settings:
    """Everything a result depends on; a study folder holds runs of one ``Settings`` only.

    Budget of the defaults, measured on one full study on a 2-core machine: the 93 runs took 196
    process-minutes with one torch thread each (CoIT sweep 68, MuIT sweep 65, allocation runs 40,
    CoIT against English-only 22), 101 min of wall time as two processes (``--part``), after 7
    min building the assets with two threads: 108 min in all, some of it shared with other jobs.
    Claim 3's 12 optimised runs, planned again from the ceiling-bounded ``auto`` laws, took
    16.2 min as two ``--part muit`` processes.
    """

    sizes: tuple[int, ...] = (25, 50, 100, 200, 400, 800, 1600, 3200)
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[int, ...] = (800, 2400)
    epochs: int = 4
    deep_epochs: int = 4
    """Passes of the CoIT and English-only runs on the deep base (claims 1 and 4), which must
    make a model that really translates the far language (chrF++ 60 or more)."""
    deep_pairs: int = 1600
    """Pairs of the CoIT run on the deep base (the English-only run takes as many steps)."""
    instructions: int = 200
    parallel: int = 4000
    pretraining: int = 20000
    vocab_size: int = 4096
    hidden_size: int = 192
    num_layers: int = 4
    deep_layers: int = 8
    num_heads: int = 8
    pretrain_steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-3
    eval_samples: int = 100
    template: str = "chat"
    """The prompt of every run (``chat``: :data:`CHAT_TEMPLATE`, set on the study's tokenizer)."""
    law: str = "auto"
    """The form of the laws of claims 2 and 3 (``fit_scaling``'s ``form``; ``auto``: per
    language the power law or the stretched exponential, whichever fits the runs better), with
    S_max held to chrF++'s maximum of 100."""
    world: dict = field(
        default_factory=lambda: {"nouns": 60, "adjectives": 15, "verbs": 15, "prepositions": 6}
    )
    """Sized so that the sweeps at 4 epochs approach the metric's ceiling: chrF++ (mean of 3 seeds)
    near 48, 81 and 96 at 400, 1,600 and 3,200 pairs, far 39, 69 and 91 (240 nouns at 8 epochs,
    one seed: far 38 at 400 and 62 at 1,600)."""


QUICK = Settings(
    sizes=(8, 16, 32, 64, 128),
    deep_pairs=128,
    seeds=(0, 1),
    budgets=(96,),
    epochs=1,
    deep_epochs=1,
    instructions=24,
    parallel=140,
    pretraining=800,
    vocab_size=700,
    hidden_size=32,
    num_layers=2,
    deep_layers=3,
    num_heads=4,
    pretrain_steps=4,
    batch_size=8,
    eval_samples=4,
    world={"nouns": 40, "adjectives": 10, "verbs": 10},
)


def coit_name(lang: str, pairs: int, seed: int) -> str:
    """The name of a CoIT sweep run (its row's ``run`` in ``coit_results.csv``)."""
    return f"coit-{lang}-{pairs}-seed{seed}"


def muit_name(counts: dict[str, int], seed: int) -> str:
    """One name per (counts, seed): a sweep point and an allocation with the same counts share
    their run."""
    return "muit-" + "-".join(str(counts[lang]) for lang in LANGUAGES) + f"-seed{seed}"


class Study:
    """One study folder: its settings, assets, runs and result tables."""

    poll_seconds = 5.0
    """How often a process waiting for another one's run or assets looks again."""

    def __init__(self, out: str | Path, settings: Settings):
        self.out, self.settings = Path(out), settings
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "settings.json"
        recorded = json.loads(json.dumps(asdict(settings)))
        if path.is_file() and json.loads(path.read_text()) != recorded:
            raise SystemExit(
                f"{self.out} holds runs made with other settings ({path}); "
                "give another --out or delete it"
            )
        path.write_text(json.dumps(recorded, indent=1))
        self.data = self.out / "assets" / "data"

    # --- assets ---------------------------------------------------------------------------
    def assets(self) -> dict[str, str]:
        """The science world's corpora, a tokenizer and two base models (cached; a process that
        finds another one building them waits for it)."""
        stamp = self.out / "assets" / "stamp.json"
        claim = stamp.with_suffix(".running")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        while not stamp.is_file():
            if _claim(claim):
                try:
                    if not stamp.is_file():  # not finished by another process meanwhile
                        stamp.write_text(json.dumps(self._build_assets()))
                finally:
                    claim.unlink(missing_ok=True)
            else:
                time.sleep(self.poll_seconds)  # another process is building them
        return json.loads(stamp.read_text())

    def _build_assets(self) -> dict:
        start, s = time.perf_counter(), self.settings
        world = ScienceWorld(LANGUAGES, seed=0, **s.world)
        paths = world.write(
            self.data,
            pretraining=s.pretraining,
            bilingual_share=0.01,
            instructions=s.instructions,
            parallel=s.parallel,
            test=max(s.eval_samples, 64),
            qa=s.eval_samples,
        )
        lines = Path(paths["pretraining"]).read_text(encoding="utf-8").splitlines()
        tokenizer = train_tokenizer(
            tokenizer_corpus(world, paths), self.out / "assets" / "base", s.vocab_size
        )
        tokenizer.chat_template = CHAT_TEMPLATE
        models = {}
        for name, layers in (("base", s.num_layers), ("deep", s.deep_layers)):
            folder = self.out / "assets" / name
            tokenizer.save_pretrained(folder)  # both bases share the one tokenizer
            pretrain_base_model(
                load_tokenizer(str(folder)),
                lines,
                folder,
                s.hidden_size,
                layers,
                s.num_heads,
                steps=s.pretrain_steps,
                seed=0,
            )
            models[name] = str(folder)
        return {**models, "seconds": round(time.perf_counter() - start, 1)}

    def cached(self, name: str, run) -> dict | None:
        """A finished run's summary, or run it and keep its summary (written whole or not).

        A run another live process is training is left to it: None (see :meth:`claimed`).
        """
        path = self.out / "runs" / f"{name}.json"
        if path.is_file():
            print(f"skipping {name}: cached in {path}")
            return json.loads(path.read_text())
        with self.claimed(name) as mine:
            if not mine:
                return None
            start = time.perf_counter()
            summary = {
                **run(self.out / "runs" / name),
                "seconds": round(time.perf_counter() - start, 1),
            }
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(summary, indent=1))
            partial.replace(path)
        return summary

    @contextmanager
    def claimed(self, name: str) -> Iterator[bool]:
        """Claim run ``name`` for this process while the block runs: True, or False when another
        live process holds it (its ``runs/<name>.running`` file names that process). A claim of
        a process that is gone is taken over; the report call waits while any claim is held."""
        claim = self.out / "runs" / f"{name}.running"
        claim.parent.mkdir(parents=True, exist_ok=True)
        if not _claim(claim):
            print(f"skipping {name}: another process is training it ({claim})")
            yield False
            return
        try:
            yield True
        finally:
            claim.unlink(missing_ok=True)

    def coit_config(self, base: str, lang: str, steps: int, weights: dict, callbacks: list) -> dict:
        """The ``fit`` config of a CoIT run of ``lang`` from ``base``: an epoch of exactly
        ``steps`` batches drawn by ``weights`` (a small parallel file repeats), in the study's
        prompt, with the study's learning rate, batch size and ``callbacks``."""
        s = self.settings
        return layout_config(
            self.data,
            lang,
            base,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            weights=weights,
            examples_per_epoch=steps * s.batch_size,
            language_modules=[LANGUAGE_MODULE],
            callbacks=callbacks,
            template=s.template,
        )

    def train(self, root: Path, config: dict, seed: int, steps: int, parallel: str | None) -> dict:
        """Train ``config`` as ``fit --config`` does (the path of ``scaling sweep``) for ``steps``
        optimizer steps, scored after the last; return the first and last ``(step, value)`` of
        every validation metric (``{"first": ..., "last": ...}``) and the steps trained."""
        overrides = [
            f"--seed_everything={seed}",
            f"--data.init_args.seed={seed}",
            f"--trainer.default_root_dir={root}",
            *length_overrides(steps, None, accumulate=1),
        ]
        if parallel is not None:
            overrides.append(f"--data.init_args.parallel={parallel}")
        log_dir = Path(fit_run([write_config(config, root / "fit.yaml")], overrides).log_dir)
        summary = json.loads((log_dir / "summary.json").read_text())
        return {
            "first": {key: tuple(v["first"]) for key, v in summary.items()},
            "last": {key: tuple(v["last"]) for key, v in summary.items()},
            "steps": read_run_record(log_dir)["global_step"],
            "log_dir": str(log_dir),
        }

    def steps(self, examples: int, epochs: int | None = None) -> int:
        passes = self.settings.epochs if epochs is None else epochs
        return max(1, math.ceil(passes * examples / self.settings.batch_size))

    # --- claim 2: one language at a time ----------------------------------------------------
    def coit_sweep(self, base: str) -> Path:
        """CoIT per language x size x seed, ``epochs`` passes over instructions and pairs."""
        s, results = self.settings, self.out / "coit_results.csv"
        done = finished_runs(results)
        for seed in s.seeds:
            for lang in LANGUAGES:
                for n in s.sizes:
                    name = coit_name(lang, n, seed)
                    if name in done:
                        print(f"skipping {name}: already in {results}")
                        continue
                    with self.claimed(name) as mine:
                        # another process may have finished it since ``done`` was read
                        if mine and name not in finished_runs(results):
                            self._coit_run(base, lang, n, seed, name, results)
        return results

    def _coit_run(self, base: str, lang: str, n: int, seed: int, name: str, results: Path):
        """One CoIT sweep run: train, evaluate, append its row to ``results``."""
        s, start = self.settings, time.perf_counter()
        parallel = subset_pairs(self.data, lang, n, self.out / "pairs")
        examples = n + 2 * s.instructions
        steps = self.steps(examples)
        weights = {"english": s.instructions, "translated": s.instructions, "parallel": n}
        callbacks = evaluation_callbacks(self.data, [lang], s.eval_samples)
        root = self.out / "runs" / name
        config = self.coit_config(base, lang, steps, weights, callbacks)
        summary = self.train(root, config, seed, steps, parallel)
        pairs = trained_pairs(read_run_record(summary["log_dir"]), lang)
        score = summary["last"][translation_key(lang, "chrf_pp")][1]
        append_once(results, name, [self._row(lang, pairs, score, seed, examples, n, name, start)])

    def _row(self, lang, pairs, score, seed, examples, subset, name, start) -> dict:
        return {
            "language": lang,
            "pairs": pairs,
            "metric": "chrf_pp",
            "score": round(score, 4),
            "seed": seed,
            "steps": self.steps(examples),
            "subset": subset,
            "run": name,
            "seconds": round(time.perf_counter() - start, 1),
        }

    # --- claim 3: the mixed setting ---------------------------------------------------------
    def muit(self, base: str, counts: dict[str, int], seed: int, name: str) -> dict:
        """One MuIT model through the package's path: an allocation file of ``counts`` read by
        the MuIT DataModule; each language's first ``count`` pairs, each seen ``epochs`` times."""
        s = self.settings

        def run(root: Path) -> dict:
            root.mkdir(parents=True, exist_ok=True)
            zero = {lang: 0.0 for lang in counts}
            plan = Allocation("chrf_pp", "sum", dict(counts), zero, dict(counts), zero)
            allocation = write_allocation(root / "allocation.yaml", plan)
            layout = DataLayout(self.data)
            streams = [
                {
                    "kind": "instructions",
                    "lang": "en",
                    "path": str(layout.instructions("en")),
                    "count": s.instructions,
                    "name": "english",
                }
            ]
            for entry in read_allocation(allocation)["streams"]:
                lang = entry["lang"]
                streams.append(
                    {
                        "kind": "instructions",
                        "lang": lang,
                        "path": str(layout.instructions(lang)),
                        "count": s.instructions,
                    }
                )
                # a language given no pairs keeps a stream the allocation sets to count 0
                prefix = (
                    subset_pairs(self.data, lang, entry["count"], root / "pairs")
                    if entry["count"]
                    else str(layout.parallel(lang))
                )
                streams.append({"kind": "parallel", "lang": lang, "path": prefix})
            muit = {  # the MuIT data module, its counts read from the allocation file
                "class_path": "lightning_xllama.data.MuITDataModule",
                "init_args": {
                    "streams": streams,
                    "allocation": str(allocation),
                    "batch_size": s.batch_size,
                    "max_length": 256,
                    "val_examples_per_stream": 4,  # held out of the subset: its pairs repeat a little
                    "template": s.template,
                    "language_modules": [LANGUAGE_MODULE],
                },
            }
            callbacks = evaluation_callbacks(self.data, list(counts), s.eval_samples)
            config = cpu_config(base, muit, callbacks, s.learning_rate)
            examples = sum(counts.values()) + (1 + len(counts)) * s.instructions
            summary = self.train(root, config, seed, self.steps(examples), None)
            return {
                "counts": counts,
                "scores": {
                    lang: summary["last"][translation_key(lang, "chrf_pp", multilingual=True)][1]
                    for lang in counts
                },
            }

        return self.cached(name, run)

    def muit_sweep(self, base: str) -> Path:
        """Both languages at each size in one MuIT model: the laws of the mixed setting.

        Its rows' ``pairs`` is the count given in the allocation file (of which the DataModule
        holds out 4 for the validation loss), the unit that ``allocate`` then splits a budget in.
        """
        s, results = self.settings, self.out / "muit_results.csv"
        names = {
            muit_name({lang: n for lang in LANGUAGES}, seed): (n, seed)
            for seed in s.seeds
            for n in s.sizes
        }
        # the allocations are planned from the whole sweep: runs another process is training
        # are waited for (and taken over if that process dies), never left out of the fit
        while True:
            done = finished_runs(results)  # one read a pass
            missing = [name for name in names if name not in done]
            if not missing:
                return results
            waiting = False
            for name in missing:
                n, seed = names[name]
                start = time.perf_counter()
                found = self.muit(base, {lang: n for lang in LANGUAGES}, seed, name)
                if found is None:  # another process is training it and will write its rows
                    waiting = True
                    continue
                examples = len(LANGUAGES) * n + 3 * s.instructions
                append_once(
                    results,
                    name,
                    [
                        self._row(lang, n, found["scores"][lang], seed, examples, n, name, start)
                        for lang in LANGUAGES
                    ],
                )
            if waiting:
                time.sleep(self.poll_seconds)

    # --- claims 1 and 4 -----------------------------------------------------------------------
    def coit_against_english(self, deep: str, seed: int) -> dict[str, dict]:
        """CoIT on the far language and English-only tuning, same steps, probe before and after."""
        s = self.settings
        n = s.deep_pairs
        steps = self.steps(n + 2 * s.instructions, s.deep_epochs)
        runs = {}
        for name, weights in (
            ("english_only", {"english": 1.0, "translated": 0.0, "parallel": 0.0}),
            ("coit", {"english": s.instructions, "translated": s.instructions, "parallel": n}),
        ):

            def run(root: Path, weights=weights) -> dict:
                parallel = subset_pairs(self.data, FAR, n, root / "pairs")
                callbacks = evaluation_callbacks(
                    self.data, [FAR], s.eval_samples, qa=True, probe=True, before_training=True
                )
                config = self.coit_config(deep, FAR, steps, weights, callbacks)
                return self.train(root, config, seed, steps, parallel)

            runs[name] = self.cached(f"{name}-seed{seed}", run)
        return runs


def append_once(results: Path, name: str, rows: list[dict]) -> None:
    """Append run ``name``'s rows to ``results`` unless they are there: under a lock, so that two
    processes finishing or finding the same run write its rows once (a row twice would count as
    another seed in the fit)."""
    lock = results.with_suffix(".lock")
    while not _claim(lock):
        time.sleep(0.1)
    try:
        if name not in finished_runs(results):
            append_results(results, rows)
    finally:
        lock.unlink(missing_ok=True)


def _claim(path: Path) -> bool:
    """Create ``path`` holding this process's id, unless a live process holds it already."""
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(path.read_text())
            except FileNotFoundError:
                continue  # released meanwhile
            except ValueError:
                return False  # its holder is writing its id
            try:
                os.kill(holder, 0)  # signal 0: only asks whether the process exists
            except ProcessLookupError:
                path.unlink(missing_ok=True)  # its process is gone: take it over
                continue
            except PermissionError:
                pass  # it exists, under another user
            return False
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False
