"""benchmarks/reproduce_paper.py end to end on a tiny world: every claim reported, runs reused."""

import json
import subprocess
import sys

import pytest
from paths import REPO

TINY = {
    "pretraining": 1500,
    "instructions": 120,
    "parallel": 200,
    "vocab_size": 900,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "pretrain_steps": 4,
}


def reproduce(out, *extra):
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "reproduce_paper.py"),
            "--out",
            str(out),
            "--sizes",
            "10",
            "20",
            "40",
            "80",
            "160",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-samples",
            "4",
            "--deep-layers",
            "3",
            "--budget",
            "100",
            "--threads",
            "1",
            "--demo-settings",
            json.dumps(TINY),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


@pytest.mark.slow
def test_report_has_every_claim_and_a_second_call_reuses_the_runs(tmp_path):
    first = reproduce(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    report = (tmp_path / "report.md").read_text()
    for heading in (
        "## 1. CoIT beats English-only",
        "## 2. Quality follows the law",
        "## 3. Optimised allocation beats uniform at a budget of 100 pairs",
        "## 4. Parallel sentences",
    ):
        assert heading in report
    assert report.count("reproduced**") >= 4  # a verdict per claim, whichever way it went
    assert (tmp_path / "fit" / "fit.png").is_file() and (tmp_path / "layers.png").is_file()
    assert "kind: allocation" in (tmp_path / "allocation.yaml").read_text()
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5 * 3  # header + languages x sizes x metrics

    again = reproduce(tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("skipping") == 10
    assert (tmp_path / "results.csv").read_text().splitlines() == rows

    other = reproduce(tmp_path, "--seed", "1")
    assert other.returncode != 0 and "holds runs made with other arguments" in other.stderr
