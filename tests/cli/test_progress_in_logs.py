"""Progress in a log file: a few plain lines, not one carriage-return redraw per update."""

from __future__ import annotations

import io

from conftest import TINY_DEMO, run_cli

from lightning_xllama.runtime.progress import LogProgress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_per_tenth_and_a_last_line():
    stream = io.StringIO()
    clock = FakeClock()
    for _ in LogProgress(range(200), "pretraining", unit="step", stream=stream, clock=clock):
        clock.now += 0.1
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("pretraining: 20/200 step (10%)")
    assert lines[-1].startswith("pretraining: 200/200 step (100%) in 20s, 10.0 step/s")


def test_a_line_at_most_every_interval_without_a_total():
    stream = io.StringIO()
    clock = FakeClock()
    bar = LogProgress(desc="indexing", unit=" units", interval=30, stream=stream, clock=clock)
    for _ in range(100):  # 100 updates over 99 s: lines at 30, 60 and 90 s, and the last one
        bar.update(256)
        bar.set_postfix(loss="1.234")
        clock.now += 1
    bar.close()
    bar.close()  # a second close prints nothing
    lines = stream.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "indexing: 7936 units",
        "indexing: 15616 units",
        "indexing: 23296 units",
        "indexing: 25600 units",
    ]
    assert lines[-1].endswith(", loss=1.234")


def test_a_quick_loop_of_unknown_length_prints_nothing():
    stream = io.StringIO()
    bar = LogProgress(desc="indexing", stream=stream, clock=FakeClock())
    bar.update(10)
    bar.close()
    assert stream.getvalue() == ""


def test_prepare_demo_into_a_pipe_prints_a_few_progress_lines(tmp_path):
    flags = {**TINY_DEMO, "pretrain_steps": 60}
    args = ["prepare-demo", "--output_dir", str(tmp_path / "demo")]
    for key, value in flags.items():
        args += [f"--{key}", str(value)]
    result = run_cli(args, cwd=tmp_path)  # stdout and stderr are pipes: not terminals
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "\r" not in output
    lines = [line for line in output.splitlines() if "pretraining the base model" in line]
    assert 1 <= len(lines) <= 12, output
    assert lines[-1].startswith("pretraining the base model: 60/60 step (100%)")
