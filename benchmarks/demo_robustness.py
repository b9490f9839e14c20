"""Does the demo's result hold on another machine? The demo run (``configs/demo.yaml``) with
several seeds, and one seed with another torch thread count and with other ATen vector kernels
(``ATEN_CPU_CAPABILITY=default``: reductions, softmax and the loss summed in another order, as on
another CPU; on a 2-core AVX2 machine 1 and 2 threads gave bit-identical runs), each a full
``fit`` in its own process.

    # 5 runs: seeds 0 1 2 at 2 threads, seed 0 at 1 thread, seed 0 at 2 threads with default kernels
    .venv/bin/python benchmarks/demo_robustness.py
    # the README's 6 runs, two at a time (then the minutes column is not an idle machine's)
    .venv/bin/python benchmarks/demo_robustness.py --seeds 0 1 2 42 --threads 1 --thread-variants 2 --parallel 2
    .venv/bin/python benchmarks/demo_robustness.py --set model.init_args.learning_rate=2e-3 --out /tmp/lr

Reported for each run: the final (last validation) chrF++, BLEU, sentence exact match, QA F1 and
validation loss, the chrF++ curve over the validation passes and the run's wall time; then the
range of each score over the runs (the validation loss is measured on each seed's own
held-out examples, so it varies with the seed more than the test-set scores do). The demo is robust when every run's final chrF++ lies within
``--tolerance`` (3) points of the runs' midpoint ((min + max) / 2), i.e. max - min <= 6; the
report also says whether max - min <= ``--tolerance`` (the stricter reading: any two runs within
3 points). Each run's result is cached in ``--out/runs/NAME.json``: a second call with the same
settings reruns nothing. Needs ``prepare-demo`` first. Not part of CI: each run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import yaml
from bench_assets import REPO, run_package

from lightning_xllama.evaluation.plots import read_metrics_csv

HEADLINE = {
    "chrF++": "val/translation/en-syn_far/chrf_pp",
    "BLEU": "val/translation/en-syn_far/bleu",
    "exact match": "val/translation/en-syn_far/exact_match",
    "QA F1": "val/qa/syn_far/f1",
    "val loss": "val/loss",
}
"""The scores compared, by their name in the report and their key in ``run.json``."""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seed_everything of each run"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of the seed runs (OMP_NUM_THREADS)"
    )
    parser.add_argument(
        "--thread-variants",
        type=int,
        nargs="*",
        default=[1],
        help="more thread counts, each a run of the first seed",
    )
    parser.add_argument(
        "--kernel-variants",
        nargs="*",
        default=["default"],
        help="ATen CPU capabilities (ATEN_CPU_CAPABILITY: default, avx2, avx512), each a run of the "
        "first seed at --threads: other vector kernels sum in another order, as another CPU does",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a change to the config for every run, as a dotted key and a YAML value "
        "(model.init_args.learning_rate=2e-3, trainer.max_epochs=3); repeatable",
    )
    parser.add_argument(
        "--parallel", type=int, default=1, help="runs at once (their threads should fit the cores)"
    )
    parser.add_argument(
        "--root", type=Path, default=REPO, help="the folder the config's relative paths start from"
    )
    parser.add_argument("--tolerance", type=float, default=3.0, help="chrF++ points, see above")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "demo_robustness")
    return parser.parse_args(argv)


SET_BY_THE_SCRIPT = ("seed_everything", "trainer.default_root_dir", "HFExport.output_dir")
"""Keys each run sets itself (its seed and its own output folders): ``--set`` refuses them."""


def set_key(config: dict, dotted: str, value: Any) -> None:
    """Set ``config[a][b]...`` for the dotted key ``a.b...``, whose parents must exist in the
    config; a callback is named by its class (``trainer.callbacks.QAEvaluation.max_samples``)."""
    if any(dotted == key or dotted.endswith("." + key) for key in SET_BY_THE_SCRIPT):
        raise SystemExit(
            f"--set {dotted}: each run sets this itself ({', '.join(SET_BY_THE_SCRIPT)})"
        )
    *parents, last = dotted.split(".")
    node: Any = config
    for depth, key in enumerate(parents):
        where = ".".join(parents[: depth + 1])
        if isinstance(node, list):
            matches = [c for c in node if c["class_path"].rsplit(".", 1)[-1] == key]
            if not matches:
                raise SystemExit(f"--set {dotted}: no callback named {key} in the config")
            node = matches[0].setdefault("init_args", {})
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise SystemExit(f"--set {dotted}: the config has no {where} to set a key in")
        if not isinstance(node, (dict, list)):
            raise SystemExit(f"--set {dotted}: {where} is a value ({node!r}), not a section")
    if isinstance(node, list):
        raise SystemExit(f"--set {dotted}: name a callback's argument (callbacks.CLASS.argument)")
    node[last] = value


def parse_value(text: str) -> Any:
    """A ``--set`` value as YAML, with ``2e-3`` a number (YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def run_config(base: dict, changes: list[str], seed: int, folder: Path) -> dict:
    """The demo config for one run: ``changes``, the seed, and every output under ``folder``."""
    config = json.loads(json.dumps(base))
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise SystemExit(f"--set {change!r}: expected KEY=VALUE")
        set_key(config, key, parse_value(value))
    config["seed_everything"] = seed
    config["trainer"]["default_root_dir"] = str(folder / "runs")
    for callback in config["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("HFExport"):
            callback["init_args"]["output_dir"] = str(folder / "final_model")
    return config


def run_one(
    name: str, config: dict, threads: int, kernels: Optional[str], out: Path, root: Path
) -> dict:
    """One demo ``fit`` in a fresh process with ``threads`` torch threads and, with ``kernels``,
    that ATen CPU capability (cached by name: a run is repeated only when its settings changed)."""
    cache = out / "runs" / f"{name}.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if (cached["config"], cached["threads"], cached.get("kernels")) == (
            config,
            threads,
            kernels,
        ):
            return cached
    folder = out / "work" / name
    shutil.rmtree(folder, ignore_errors=True)  # an earlier config's run
    folder.mkdir(parents=True)
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    # a native run uses what this CPU has, whatever the caller's environment says
    kernel_env = {"ATEN_CPU_CAPABILITY": kernels}
    run_package(
        ["fit", "--config", str(config_path)], folder / "fit.log", threads, root, kernel_env
    )
    seconds = time.perf_counter() - start
    records = sorted((folder / "runs").glob("lightning_logs/version_*/run.json"))
    if not records:
        raise SystemExit(f"run {name} wrote no run.json under {folder / 'runs'}: see fit.log")
    record = json.loads(records[-1].read_text())
    missing = [key for key in HEADLINE.values() if key not in record["evaluation"]]
    if missing:
        raise SystemExit(f"run {name} did not measure {missing}: does the config evaluate them?")
    curve = read_metrics_csv(Path(record["log_dir"]) / "metrics.csv", [HEADLINE["chrF++"]])
    result = {
        "name": name,
        "seed": config["seed_everything"],
        "threads": threads,
        "kernels": kernels,
        "seconds": round(seconds, 1),
        "scores": {label: record["evaluation"][key] for label, key in HEADLINE.items()},
        "curve": [(step, round(value, 2)) for step, value in curve.get(HEADLINE["chrF++"], [])],
        "config": config,
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    print(f"{name}: chrF++ {result['scores']['chrF++']:.2f} in {seconds / 60:.1f} min", flush=True)
    return result


def report(
    results: list[dict], changes: list[str], tolerance: float, config: str = "configs/demo.yaml"
) -> str:
    """The runs' table, each score's range and the verdict, as Markdown."""
    lines = [
        "# The demo over seeds, thread counts and CPU kernels",
        "",
        f"Changes to `{config}`: {', '.join(f'`{c}`' for c in changes) or 'none'}.",
        "",
        "| run | seed | threads | kernels | "
        + " | ".join(HEADLINE)
        + " | chrF++ at each validation | minutes |",
        "|---|---|---|---|" + "---|" * len(HEADLINE) + "---|---|",
    ]
    for result in results:
        scores = " | ".join(f"{result['scores'][label]:.2f}" for label in HEADLINE)
        curve = " ".join(f"{score:.0f}" for _, score in result["curve"])
        lines.append(
            f"| {result['name']} | {result['seed']} | {result['threads']} "
            f"| {result.get('kernels') or 'native'} | {scores} | {curve} "
            f"| {result['seconds'] / 60:.1f} |"
        )
    lines += ["", "| score | min | max | max - min |", "|---|---|---|---|"]
    for label in HEADLINE:
        values = [result["scores"][label] for result in results]
        lines.append(
            f"| {label} | {min(values):.2f} | {max(values):.2f} | {max(values) - min(values):.2f} |"
        )
    chrf = [result["scores"]["chrF++"] for result in results]
    spread = max(chrf) - min(chrf)
    verdict = "robust" if spread <= 2 * tolerance else "NOT robust"
    lines += [
        "",
        f"chrF++ {min(chrf):.2f}-{max(chrf):.2f} over {len(chrf)} runs: every run within "
        f"{spread / 2:.2f} of the midpoint {(min(chrf) + max(chrf)) / 2:.2f} (tolerance "
        f"{tolerance:g}): **{verdict}**; any two runs within {tolerance:g}: "
        f"{'yes' if spread <= tolerance else 'no'}.",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    args.out, args.root = args.out.resolve(), args.root.resolve()  # runs start in --root
    base = yaml.safe_load(args.config.read_text())
    first = args.seeds[0]
    runs = [(f"seed{seed}-t{args.threads}", seed, args.threads, None) for seed in args.seeds]
    runs += [(f"seed{first}-t{t}", first, t, None) for t in args.thread_variants]
    runs += [
        (f"seed{first}-t{args.threads}-{k}", first, args.threads, k) for k in args.kernel_variants
    ]
    runs = list({name: (name, *rest) for name, *rest in runs}.values())  # each variant once
    configs = {
        name: run_config(base, args.set, seed, args.out / "work" / name) for name, seed, *_ in runs
    }
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [
            pool.submit(run_one, name, configs[name], threads, kernels, args.out, args.root)
            for name, _, threads, kernels in runs
        ]
        try:
            results = [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the runs not started yet are not started
            raise
    text = report(results, args.set, args.tolerance, str(args.config))
    print(text)
    (args.out / "report.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
