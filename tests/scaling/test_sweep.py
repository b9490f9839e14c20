"""The sweep runner: pair subsets, one training run per language x size, results the fit reads."""

import csv

import pytest

from lightning_xllama.commands.sweep import subset_pairs, sweep
from lightning_xllama.demo.layout import DataLayout, DemoLayout
from lightning_xllama.scaling.results import append_results, read_results
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def data_dir(demo_root):
    return demo_root / "artifacts" / "demo" / "data"


def test_subset_is_the_first_pairs_of_both_sides(data_dir, tmp_path):
    prefix = subset_pairs(data_dir, "syn_far", 7, tmp_path)
    source = DataLayout(data_dir).parallel("syn_far")
    for side in ("en", "syn_far"):
        lines = open(f"{prefix}.{side}", encoding="utf-8").read().splitlines()
        assert lines == open(f"{source}.{side}", encoding="utf-8").read().splitlines()[:7]


def test_subset_larger_than_the_corpus_names_its_size(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"asked for 100000 pairs; the corpus holds 200"):
        subset_pairs(data_dir, "syn_far", 100000, tmp_path)


def test_subset_of_mismatched_files_names_both_lengths(tmp_path):
    folder = DataLayout(tmp_path).parallel_dir("syn_far")
    folder.mkdir(parents=True)
    (folder / "train.en").write_text("a\nb\nc\n")
    (folder / "train.syn_far").write_text("x\ny\n")
    with pytest.raises(ValueError, match=r"train.en has 3 lines but .*train.syn_far has 2"):
        subset_pairs(tmp_path, "syn_far", 2, tmp_path / "out")


def test_missing_corpus_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"en-syn_near/train.en: no parallel corpus"):
        subset_pairs(tmp_path, "syn_near", 2, tmp_path / "out")


def test_unknown_language_fails_before_training(data_dir, tmp_path):
    with pytest.raises(KeyError, match="unknown language code 'xx'"):
        sweep(str(tmp_path / "r.csv"), ["xx"], [10], str(data_dir), out=str(tmp_path))
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.slow
def test_sweep_appends_one_row_per_metric_and_skips_finished_runs(demo_root, data_dir, tmp_path):
    results, out = tmp_path / "results.csv", tmp_path / "sweep"
    args = [
        "scaling",
        "sweep",
        "--results",
        str(results),
        "--out",
        str(out),
        "--languages",
        "[syn_far]",
        "--sizes",
        "[10, 40]",
        "--data_dir",
        str(data_dir),
        "--base_model",
        str(DemoLayout(demo_root / "artifacts" / "demo").base_model),
        "--max_steps",
        "3",
        "--batch_size",
        "4",
        "--eval_samples",
        "4",
    ]
    first = run_cli(args, cwd=demo_root)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = list(csv.DictReader(results.open()))
    assert [(r["subset"], r["metric"]) for r in rows] == [
        (n, m) for n in ("10", "40") for m in ("chrf_pp", "bleu", "exact_match")
    ]
    assert all(r["language"] == "syn_far" and r["steps"] == "3" and r["seed"] == "0" for r in rows)
    assert all(0.0 <= float(r["score"]) <= 100.0 for r in rows)
    # the validation loss holds out min(16, n/10) pairs; `pairs` is what was trained on
    assert [r["pairs"] for r in rows[::3]] == ["9", "36"] and [r["subset"] for r in rows[::3]] == [
        "10",
        "40",
    ]
    assert len(open(out / "pairs" / "en-syn_far.40.syn_far").read().splitlines()) == 40
    pairs, scores = read_results(results, "chrf_pp")["syn_far"]
    assert list(pairs) == [9, 36] and len(scores) == 2

    again = run_cli(args, cwd=demo_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping syn_far-10pairs-3steps-seed0" in again.stdout
    assert len(list(csv.DictReader(results.open()))) == len(rows)


def test_sizes_beyond_the_corpus_fail_before_any_run(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"sizes up to 5000 asked for; the corpus holds 200 pairs"):
        sweep(
            str(tmp_path / "r.csv"),
            ["syn_near", "syn_far"],
            [10, 5000],
            str(data_dir),
            out=str(tmp_path),
        )
    assert not (tmp_path / "runs").exists()


def test_a_table_with_other_columns_is_refused(data_dir, tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("language,pairs,metric,score\nsyn_far,10,chrf_pp,3.0\n")
    with pytest.raises(ValueError, match=r"results.csv, line 1: header .* is not a sweep's"):
        sweep(str(results), ["syn_far"], [10], str(data_dir), out=str(tmp_path))


def test_appending_after_a_line_without_an_end_is_refused(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text(
        "language,pairs,metric,score,seed,steps,subset,run,seconds\nsyn_far,9,bleu,1,0,3,10,r,1"
    )
    with pytest.raises(ValueError, match="the last line has no line end"):
        append_results(results, [{"language": "syn_far"}])


def test_an_epoch_sweep_trains_longer_on_more_pairs(demo_root, data_dir, tmp_path):
    """With ``epochs`` each run passes over its own data: 30 more pairs at batch 8 are about 4
    more steps, and the steps column records what each run trained."""
    results = tmp_path / "results.csv"
    rows = sweep(
        str(results),
        ["syn_far"],
        [10, 40],
        str(data_dir),
        base_model=str(DemoLayout(demo_root / "artifacts" / "demo").base_model),
        out=str(tmp_path / "sweep"),
        batch_size=8,
        eval_samples=2,
        epochs=1,
    )
    steps = {r["subset"]: r["steps"] for r in rows}
    assert 3 <= steps[40] - steps[10] <= 5, steps
    assert {r["run"] for r in rows} == {
        "syn_far-10pairs-1epochs-seed0",
        "syn_far-40pairs-1epochs-seed0",
    }


def test_epochs_come_without_weights(data_dir, tmp_path):
    with pytest.raises(ValueError, match="comes without weights"):
        sweep(
            str(tmp_path / "r.csv"),
            ["syn_far"],
            [10],
            str(data_dir),
            out=str(tmp_path),
            epochs=1,
            weights={"english": 1.0, "translated": 1.0, "parallel": 1.0},
        )
