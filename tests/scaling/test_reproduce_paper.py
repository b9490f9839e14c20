"""benchmarks/reproduce_paper.py --quick end to end: every claim judged, runs reused on a rerun."""

import subprocess
import sys

import pytest
from paths import REPO


def reproduce(out, *extra):
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "reproduce_paper.py"),
            "--out",
            str(out),
            "--threads",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )


@pytest.mark.slow
def test_quick_report_judges_every_claim_and_a_second_call_reuses_the_runs(tmp_path):
    part = reproduce(tmp_path, "--quick", "--part", "deep")  # one part, as a parallel process
    assert part.returncode == 0, part.stderr[-4000:]
    assert "part deep done" in part.stdout and not (tmp_path / "report.md").exists()
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.json")) == [
        "coit-seed0.json",
        "coit-seed1.json",
        "english_only-seed0.json",
        "english_only-seed1.json",
    ]
    first = reproduce(tmp_path, "--quick")
    assert first.returncode == 0, first.stderr[-4000:]
    assert "skipping english_only-seed1" in first.stdout  # the part's runs are reused
    report = (tmp_path / "report.md").read_text()
    for heading in (
        "| 1 CoIT > English-only |",
        "| 2 saturating law; far needs more |",
        "| 3 allocation > uniform |",
        "| 4 middle layers align most |",
        "## 2. The law",
        "Out of sample (fitted without the largest size):",
        "## 3. Allocation in the mixed setting",
    ):
        assert heading in report
    assert report.count("Rule: reproduced if") == 4  # the verdict rules, printed
    assert (
        "a model that really translates, as the claim is about, scores 60 or more: not met"
        in report
    )
    # two seeds: the paired claims cannot be decided, whatever the numbers
    assert report.count("**undecided (fewer than 3 seeds)**") == 3
    assert (tmp_path / "fit" / "fit.png").is_file() and (tmp_path / "layers.png").is_file()
    rows = (tmp_path / "coit_results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5 * 2  # header + languages x sizes x seeds
    allocations = list((tmp_path / "runs").glob("muit-*/allocation.yaml"))
    assert allocations and all("kind: allocation" in p.read_text() for p in allocations)

    summaries = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    again = reproduce(tmp_path, "--quick")
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("skipping") >= 20 + 4  # the CoIT sweep and the deep runs
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")} == summaries
    assert (tmp_path / "coit_results.csv").read_text().splitlines() == rows

    other = reproduce(tmp_path)
    assert other.returncode != 0 and "holds runs made with other settings" in other.stderr
