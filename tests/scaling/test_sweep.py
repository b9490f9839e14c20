"""The sweep runner: pair subsets, one training run per language x size, results the fit reads."""

import csv

import pytest
import yaml

from lightning_xllama.commands.sweep import subset_pairs, sweep
from lightning_xllama.demo.layout import DataLayout, DemoLayout
from lightning_xllama.runtime.run_record import read_run_record
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
        "--language_modules",
        "[lightning_xllama.demo.languages]",
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


def base_config(
    demo_root, path, max_length=128, precision="bf16-mixed", max_new_tokens=7, devices=1
):
    """A user's base ``fit`` config of the demo data for ``scaling sweep --fit_config``."""
    data = demo_root / "artifacts" / "demo" / "data"
    layout = DataLayout(data)
    path.write_text(
        f"""
model:
  class_path: lightning_xllama.model.XLlamaModule
  init_args:
    model_name_or_path: {DemoLayout(demo_root / "artifacts" / "demo").base_model}
    learning_rate: 1.0e-3
data:
  class_path: lightning_xllama.data.CoITDataModule
  init_args:
    language: syn_far
    english_instructions: {layout.instructions("en")}
    translated_instructions: {layout.instructions("syn_far")}
    parallel: {layout.parallel("syn_far")}
    weights: {{english: 1.0, translated: 1.0, parallel: 3.0}}
    max_length: {max_length}
    batch_size: 4
    val_examples_per_stream: 8
    language_modules: [lightning_xllama.demo.languages]
trainer:
  accelerator: cpu
  devices: {devices}
  strategy: {"ddp" if devices > 1 else "auto"}
  precision: {precision}
  max_epochs: 5
  limit_val_batches: 1
  enable_progress_bar: false
  callbacks:
    - class_path: lightning_xllama.callbacks.TranslationEvaluation
      init_args:
        test_prefix: {layout.translation_test("syn_far")}
        directions: [en-syn_far]
        max_samples: 2
        max_new_tokens: {max_new_tokens}
        before_training: false
        write_samples: false
"""
    )
    return path


def test_a_sweep_runs_with_the_base_configs_lengths_precision_and_generation(demo_root, tmp_path):
    """Each run is ``fit`` of the base config plus what the sweep varies: the config's
    max_length, precision and generation length are the run's, read back from its saved config
    and run.json; the sweep sets the pair subset, the seed, the steps and the run folder."""
    config = base_config(demo_root, tmp_path / "base.yaml")
    out = tmp_path / "sweep"
    rows = sweep(
        str(tmp_path / "results.csv"),
        ["syn_far"],
        [10],
        out=str(out),
        seeds=[3],
        max_steps=2,
        fit_config=str(config),
        metrics=["chrf_pp"],
    )
    assert [(r["run"], r["pairs"], r["steps"], r["seed"]) for r in rows] == [
        ("syn_far-10pairs-2steps-seed3", 9, 2, 3)
    ]
    (log_dir,) = (out / "runs" / "syn_far-10pairs-2steps-seed3").rglob("run.json")
    record = read_run_record(log_dir)
    assert record["training_settings"]["precision"] == "bf16-mixed"
    assert record["data_plan"]["max_length"] == 128 and record["data_plan"]["seed"] == 3
    assert record["global_step"] == 2
    saved = yaml.safe_load((log_dir.parent / "config.yaml").read_text())
    assert saved["data"]["init_args"]["max_length"] == 128
    assert saved["data"]["init_args"]["parallel"] == str(out / "pairs" / "en-syn_far.10")
    assert saved["trainer"]["precision"] == "bf16-mixed"
    (translation,) = [c for c in saved["trainer"]["callbacks"] if "Translation" in c["class_path"]]
    assert translation["init_args"]["max_new_tokens"] == 7
    assert rows[0]["score"] == round(record["evaluation"]["val/translation/en-syn_far/chrf_pp"], 4)


def test_with_a_base_config_the_settings_it_holds_are_refused(demo_root, tmp_path):
    config = base_config(demo_root, tmp_path / "base.yaml")
    with pytest.raises(ValueError, match=r"batch_size: set data.init_args.batch_size"):
        sweep(str(tmp_path / "r.csv"), ["syn_far"], [10], fit_config=str(config), batch_size=8)


def test_a_base_config_of_another_language_is_refused_before_training(demo_root, tmp_path):
    config = base_config(demo_root, tmp_path / "base.yaml")
    with pytest.raises(ValueError, match=r"language is 'syn_far', not 'syn_near'"):
        sweep(
            str(tmp_path / "r.csv"), ["syn_near"], [10], out=str(tmp_path), fit_config=str(config)
        )
    assert not (tmp_path / "runs").exists()


def test_a_per_language_config_path_and_a_corpus_too_small_fail_before_training(
    demo_root, tmp_path
):
    (tmp_path / "per_language").mkdir()
    base_config(demo_root, tmp_path / "per_language" / "syn_far.yaml")
    with pytest.raises(FileNotFoundError, match=r"per_language/syn_near.yaml'?: no such file"):
        sweep(
            str(tmp_path / "r.csv"),
            ["syn_far", "syn_near"],
            [10],
            fit_config=str(tmp_path / "per_language" / "{language}.yaml"),
        )
    with pytest.raises(ValueError, match=r"sizes up to 5000 asked for; the corpus holds 200"):
        sweep(
            str(tmp_path / "r.csv"),
            ["syn_far"],
            [10, 5000],
            out=str(tmp_path),
            fit_config=[str(tmp_path / "per_language" / "{language}.yaml")],
        )
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_two_process_sweep_trains_on_both_and_writes_its_rows_once(demo_root, tmp_path):
    """The config's devices are the run's: Lightning's launched process runs the sweep too, and
    only rank 0 reads run.json and appends the rows."""
    config = base_config(demo_root, tmp_path / "ddp.yaml", precision="32-true", devices=2)
    results, out = tmp_path / "results.csv", tmp_path / "sweep"
    args = ["scaling", "sweep", "--results", str(results), "--out", str(out)]
    args += ["--languages", "[syn_far]", "--sizes", "[10]", "--max_steps", "1"]
    done = run_cli([*args, "--fit_config", str(config), "--metrics", "[chrf_pp]"], cwd=demo_root)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(results.open()))
    assert [(r["run"], r["steps"]) for r in rows] == [("syn_far-10pairs-1steps-seed0", "1")]
    (record,) = (out / "runs").rglob("run.json")
    assert read_run_record(record)["training_settings"]["world_size"] == 2
