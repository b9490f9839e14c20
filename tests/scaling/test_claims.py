"""The reproduction's verdict rules (paired t intervals over seeds, undecided below three seeds)
and its runs shared between processes."""

import subprocess
import sys

import pytest
from paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from reproduction.claims import MIN_SEEDS, Paired, judge  # noqa: E402


def test_paired_interval_is_the_t_interval_of_the_differences():
    paired = Paired.of([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975; 2) = 4.303: half width 4.303 / sqrt(3)
    assert paired.mean == 2.0 and paired.seeds == 3
    assert paired.low == pytest.approx(2 - 2.4842, abs=1e-3)
    assert paired.high == pytest.approx(2 + 2.4842, abs=1e-3)
    assert not paired.above_zero and str(paired) == "+2.00 [-0.48, +4.48] (3 seeds)"
    assert Paired.of([1.0, 1.1, 0.9, 1.05]).above_zero
    one = Paired.of([1.5])
    assert not one.above_zero and str(one) == "+1.50 (1 seed: no interval)"


def test_verdict_needs_three_seeds_and_an_interval_above_zero():
    two = Paired.of([5.0, 6.0])
    assert judge(True, [two]) == f"undecided (fewer than {MIN_SEEDS} seeds)"
    clear, unclear = Paired.of([5.0, 6.0, 5.5]), Paired.of([-1.0, 2.0, 0.5])
    assert judge(clear.above_zero, [clear]) == "reproduced"
    assert judge(unclear.above_zero, [unclear]) == "not reproduced"
    assert judge(False, []) == "not reproduced"


def test_probe_curves_are_in_layer_order_past_ten_layers():
    from reproduction.claims import FAR, probe_curve

    values = {f"val/probe/en-{FAR}/layer{i}/cosine_gap": (0, float(i)) for i in range(12)}
    assert probe_curve({"last": values}, "last", "cosine_gap").tolist() == list(range(12))


def test_a_run_another_live_process_trains_is_left_to_it_and_a_dead_ones_is_taken_over(tmp_path):
    from reproduction.study import QUICK, Study

    study, calls = Study(tmp_path, QUICK), []

    def run(root):
        calls.append(root.name)
        return {"score": 1.0}

    (tmp_path / "runs").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "runs" / "busy.running").write_text(str(live.pid))
        assert study.cached("busy", run) is None and calls == []
    finally:
        live.kill()
        live.wait()
    # its process is gone: the claim is stale, the run is trained here and the claim released
    assert study.cached("busy", run)["score"] == 1.0 and calls == ["busy"]
    assert not (tmp_path / "runs" / "busy.running").exists()
    assert study.cached("busy", run)["score"] == 1.0 and calls == ["busy"]  # cached now


def test_a_process_finding_the_assets_being_built_waits_for_them(tmp_path):
    import json
    import threading

    from reproduction.study import QUICK, Study

    study = Study(tmp_path, QUICK)
    stamp = tmp_path / "assets" / "stamp.json"
    stamp.parent.mkdir(parents=True)
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stamp.with_suffix(".running").write_text(str(builder.pid))
        built = {"base": "b", "deep": "d", "seconds": 1.0}
        # the other process finishes: writes the stamp, then releases its claim
        finish = threading.Timer(1.0, lambda: stamp.write_text(json.dumps(built)))
        finish.start()
        assert study.assets() == built  # waited for the stamp instead of building a second copy
        finish.join()
    finally:
        builder.kill()
        builder.wait()
    assert not (tmp_path / "assets" / "data").exists()


def test_the_coit_sweep_leaves_runs_another_live_process_trains_to_it(tmp_path):
    from reproduction.study import LANGUAGES, QUICK, Study, coit_name

    study = Study(tmp_path, QUICK)
    names = [
        coit_name(lang, n, seed) for seed in QUICK.seeds for lang in LANGUAGES for n in QUICK.sizes
    ]
    (tmp_path / "runs").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name in names:
            (tmp_path / "runs" / f"{name}.running").write_text(str(live.pid))
        results = study.coit_sweep("no base model: nothing may be trained here")
    finally:
        live.kill()
        live.wait()
    assert not results.exists()  # no run trained, no row written
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.running")) == sorted(names)


def test_a_runs_rows_are_appended_once_whoever_finds_it_finished(tmp_path):
    from reproduction.study import append_once

    from lightning_xllama.scaling.results import read_results

    results = tmp_path / "results.csv"
    row = {"language": "x", "pairs": 10, "metric": "chrf_pp", "score": 50.0, "seed": 0}
    row |= {"steps": 5, "subset": 10, "run": "run-a", "seconds": 1.0}
    append_once(results, "run-a", [row])
    append_once(results, "run-a", [row])  # a second process finding the same run finished
    append_once(results, "run-b", [{**row, "run": "run-b", "seed": 1, "score": 52.0}])
    pairs, scores = read_results(results, "chrf_pp")["x"]
    assert scores.tolist() == [50.0, 52.0]
    assert not results.with_suffix(".lock").exists()


def test_the_muit_sweep_waits_for_runs_another_process_trains_before_returning(tmp_path):
    import threading

    from reproduction.study import LANGUAGES, QUICK, Study, append_once, muit_name

    study = Study(tmp_path, QUICK)
    study.poll_seconds = 0.05
    runs = {
        muit_name({lang: n for lang in LANGUAGES}, seed): (n, seed)
        for seed in QUICK.seeds
        for n in QUICK.sizes
    }
    (tmp_path / "runs").mkdir()
    results = tmp_path / "muit_results.csv"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def other_process_finishes():
        for name, (n, seed) in runs.items():
            row = {"pairs": n, "metric": "chrf_pp", "score": 40.0 + n / 100, "seed": seed}
            row |= {"steps": 1, "subset": n, "run": name, "seconds": 1.0}
            append_once(results, name, [{**row, "language": lang} for lang in LANGUAGES])

    try:
        for name in runs:
            (tmp_path / "runs" / f"{name}.running").write_text(str(live.pid))
        finishing = threading.Timer(0.5, other_process_finishes)
        finishing.start()
        # returns only once every run's rows are in; nothing trained here (no base model)
        assert study.muit_sweep("no base model: nothing may be trained here") == results
        rows = results.read_text().splitlines()[1:]  # read as it returns
        finishing.join()
    finally:
        live.kill()
        live.wait()
    assert len(rows) == len(runs) * len(LANGUAGES)
