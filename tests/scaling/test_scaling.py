"""Scaling-law fit, inversion, bootstrap bands, plots and budget allocation."""

import json
import math
import warnings

import numpy as np
import pytest
from scaling_laws import law, random_fit

from lightning_xllama.commands.scaling import allocate_command, fit_command
from lightning_xllama.scaling import (
    ScalingFit,
    allocate,
    fit_scaling,
    plot_fits,
    power_law,
    read_allocation,
    read_results,
    write_allocation,
)

TRUTH = {"syn_near": (65.0, 45.0, 0.7, 800.0), "syn_far": (50.0, 40.0, 0.5, 4000.0)}
SIZES = np.array([0, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000])


def noisy_points(truth=TRUTH, sizes=SIZES, seeds=2, noise=0.5, seed=1):
    rng = np.random.default_rng(seed)
    points = {}
    for language, params in truth.items():
        n = np.repeat(sizes, seeds).astype(float)
        points[language] = (n, power_law(n, *params) + rng.normal(0, noise, len(n)))
    return points


@pytest.fixture(scope="module")
def fitted():
    return fit_scaling(noisy_points(), "chrf", n_bootstrap=60, seed=0)


def test_fit_recovers_known_parameters(fitted):
    grid = np.geomspace(100, 64000, 25)
    for language, (s_max, a, alpha, n0) in TRUTH.items():
        fit = fitted.languages[language]
        assert fit.model == "power" and fit.r2 > 0.99
        assert fit.s_max == pytest.approx(s_max, abs=3)
        assert fit.a == pytest.approx(a, rel=0.15)
        assert fit.alpha == pytest.approx(alpha, abs=0.15)
        assert fit.n0 == pytest.approx(n0, rel=0.5)
        assert (
            np.abs(
                fitted.predict(language, grid).value - power_law(grid, s_max, a, alpha, n0)
            ).max()
            < 0.6
        )
        assert len(fit.residuals) == len(fit.pairs) == 20 and fit.n_range == (0, 64000)
        assert all(value is not None and value > 0 for value in fit.stderr.values())


def test_shared_exponent_fits_languages_with_three_sizes_each():
    shared = {"syn_near": (65.0, 40.0, 0.6, 500.0), "syn_far": (50.0, 40.0, 0.6, 5000.0)}
    points = noisy_points(shared, sizes=np.array([1000, 10000, 100000]), seeds=3, noise=0.3)
    with pytest.raises(
        ValueError,
        match=r"'syn_near' has 3 distinct pair count\(s\) \[1000, 10000, 100000\].*fewer than the 4",
    ):
        fit_scaling(points, "chrf", n_bootstrap=0)
    fit = fit_scaling(points, "chrf", shared_exponent=True, n_bootstrap=0)
    near, far = fit.languages["syn_near"], fit.languages["syn_far"]
    assert near.alpha == far.alpha == pytest.approx(0.6, abs=0.15)
    assert near.a == far.a
    assert far.n0 / near.n0 == pytest.approx(
        10, rel=0.5
    )  # the near language's similarity factor k is 10x
    assert near.s_max == pytest.approx(65, abs=3) and far.s_max == pytest.approx(50, abs=3)


def test_predict_and_pairs_needed_invert_each_other(fitted):
    for language in TRUTH:
        for n in (300.0, 5000.0, 50000.0):
            score = fitted.predict(language, n)
            assert score.low <= score.value <= score.high
            needed = fitted.pairs_needed(language, score.value)
            assert needed.value == pytest.approx(n, rel=1e-6)
            assert needed.low <= needed.value <= needed.high
        assert (
            fitted.pairs_needed(
                language, fitted.languages[language].s_max - fitted.languages[language].a - 1
            ).value
            == 0
        )


def test_unreachable_target_is_an_error(fitted):
    with pytest.raises(ValueError, match=r"unreachable for 'syn_far': the fitted ceiling S_max"):
        fitted.pairs_needed("syn_far", fitted.languages["syn_far"].s_max + 0.1)
    with pytest.raises(ValueError, match=r"no fitted law for language 'xx'"):
        fitted.predict("xx", 10)


@pytest.mark.parametrize("intervals", ["profile", "bootstrap"])
def test_band_covers_the_truth(fitted, intervals):
    if intervals == "bootstrap":
        fitted = fit_scaling(noisy_points(), "chrf", n_bootstrap=60, seed=0, intervals=intervals)
    grid = np.geomspace(100, 64000, 40)
    for language, params in TRUTH.items():
        assert bool(fitted.languages[language].intervals) == (intervals == "profile")
        band = fitted.predict(language, grid)
        truth = power_law(grid, *params)
        assert np.all(band.high - band.low > 0)
        assert np.mean((band.low <= truth) & (truth <= band.high)) >= 0.8


def test_fit_json_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "fit.json")
    assert json.loads(path.read_text())["kind"] == "scaling_fit"
    loaded = ScalingFit.load(path)
    assert loaded == fitted
    assert loaded.predict("syn_near", 1234.0) == fitted.predict("syn_near", 1234.0)
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "something_else"}))
    with pytest.raises(ValueError, match=r"bad.json: not a scaling fit"):
        ScalingFit.load(tmp_path / "bad.json")


def test_plot_is_written(fitted, tmp_path):
    path = plot_fits(fitted, tmp_path / "fit.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_non_increasing_scores_error_or_fall_back_to_flat():
    n = np.repeat([1000.0, 2000.0, 4000.0, 8000.0, 16000.0], 2)
    points = {"syn_near": noisy_points()["syn_near"], "syn_odd": (n, 40 - n / 1000)}
    with pytest.raises(
        ValueError,
        match=r"'syn_odd': chrf does not grow with the number of pairs.*on_non_increasing='flat'",
    ):
        fit_scaling(points, "chrf", n_bootstrap=0)
    with pytest.warns(UserWarning, match=r"'syn_odd'.*does not grow.*flat"):
        fit = fit_scaling(points, "chrf", n_bootstrap=20, on_non_increasing="flat")
    flat = fit.languages["syn_odd"]
    assert flat.model == "flat" and flat.s_max == pytest.approx(np.mean(40 - n / 1000))
    assert fit.predict("syn_odd", 1e6).value == pytest.approx(flat.s_max)
    assert fit.languages["syn_near"].model == "power"


@pytest.mark.parametrize(
    "metric, message",
    [
        ("score", r"'syn_lin'.*upper bound 160.*has not started to saturate"),
        ("chrf", r"'syn_lin'.*held at chrf's maximum 100.*no lower ceiling"),
    ],
)
def test_unsaturated_data_warns_that_extrapolation_is_unreliable(metric, message):
    n = np.array([1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0])
    with pytest.warns(UserWarning, match=message):
        fit_scaling({"syn_lin": (n, n / 100)}, metric, n_bootstrap=0)


def test_exact_fit_warns_that_the_band_has_zero_width():
    n = np.array([0.0, 1000.0, 4000.0, 16000.0])
    with pytest.warns(UserWarning, match=r"as many data points as parameters.*zero width"):
        fit = fit_scaling({"syn_a": (n, power_law(n, *TRUTH["syn_near"]))}, "chrf", n_bootstrap=5)
    band = fit.predict("syn_a", 2000.0)
    assert band.low == pytest.approx(band.high)


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            ["language,pairs,metric", "syn_a,10,chrf"],
            r"results.csv, line 1: missing column\(s\) \['score'\]",
        ),
        (
            ["language,pairs,metric,score", "syn_a,10,chrf,1", "syn_a,20,chrf,high"],
            r"results.csv, line 3: score 'high' is not a number",
        ),
        (
            ["language,pairs,metric,score", "syn_a,-5,chrf,1"],
            r"results.csv, line 2: pairs must be a non-negative whole number, got '-5'",
        ),
        (
            ["language,pairs,metric,score,seed", "syn_a,10,chrf,1,x"],
            r"results.csv, line 2: seed must be a whole number",
        ),
        (
            ["language,pairs,metric,score", "syn_a,10,bleu,1"],
            r"results.csv: no rows for metric 'chrf'; metrics in the file: \['bleu'\]",
        ),
    ],
)
def test_malformed_results_table(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        read_results(write_csv(tmp_path / "results.csv", lines), "chrf")


def test_too_few_sizes_names_the_language_and_counts():
    points = {
        "syn_a": (np.array([100.0, 100.0, 1000.0, 1000.0]), np.array([10.0, 11.0, 20.0, 21.0]))
    }
    with pytest.raises(
        ValueError,
        match=r"'syn_a' has 2 distinct pair count\(s\) \[100, 1000\] for chrf, fewer than the 4",
    ):
        fit_scaling(points, "chrf")
    two_sizes = {
        name: (np.array([100.0, 1000.0]), np.array([10.0, 20.0])) for name in ("syn_a", "syn_b")
    }
    with pytest.raises(
        ValueError,
        match=r"'syn_a' has 2 distinct pair count\(s\) \[100, 1000\] for chrf, fewer than the 3 "
        r"its shared-exponent law needs",
    ):
        fit_scaling(two_sizes, "chrf", shared_exponent=True)


@pytest.mark.parametrize("objective", ["sum", "min"])
def test_greedy_equals_brute_force_on_small_concave_cases(objective):
    rng = np.random.default_rng(7)
    for _ in range(8):
        fit = random_fit(rng, int(rng.integers(2, 5)))
        step, units = 5, int(rng.integers(4, 16))
        caps = {name: step * int(rng.integers(1, units + 1)) for name in fit.languages}
        minimums = {name: step * int(rng.integers(0, 2)) for name in fit.languages}
        budget = min(step * units, sum(caps.values()))
        minimums = {name: min(m, caps[name]) for name, m in minimums.items()}
        budget = max(budget, sum(minimums.values()))
        options = dict(objective=objective, caps=caps, minimums=minimums, step=step)
        greedy = allocate(fit, budget, **options)
        brute = allocate(fit, budget, search="brute_force", **options)
        assert greedy.objective_value == pytest.approx(brute.objective_value, abs=1e-9)
        assert greedy.budget == budget
        assert all(minimums[name] <= count <= caps[name] for name, count in greedy.counts.items())
        assert greedy.objective_value >= _objective_of(greedy.uniform_scores, objective) - 1e-9


def _objective_of(scores, objective):
    return sum(scores.values()) if objective == "sum" else min(scores.values())


def test_optimised_beats_uniform_when_languages_differ(fitted):
    for objective in ("sum", "min"):
        allocation = allocate(fitted, 20000, objective=objective, step=100)
        assert allocation.budget == sum(allocation.uniform_counts.values()) == 20000
        assert allocation.objective_value > _objective_of(allocation.uniform_scores, objective)
        assert allocation.counts != allocation.uniform_counts


def test_uniform_split_redistributes_what_caps_leave():
    fit = ScalingFit(
        "chrf", {name: law(name, 50, 30, 0.5, 10) for name in ("syn_a", "syn_b", "syn_c")}
    )
    allocation = allocate(fit, 101, caps={"syn_a": 10}, step=1)
    assert allocation.uniform_counts == {"syn_a": 10, "syn_b": 46, "syn_c": 45}
    assert allocation.counts["syn_a"] == 10 and allocation.budget == 101


def test_allocation_errors(fitted):
    with pytest.raises(ValueError, match=r"budget 100 is below the sum of the minimums 150"):
        allocate(fitted, 100, minimums={"syn_near": 100, "syn_far": 50})
    with pytest.raises(ValueError, match=r"no fitted law for language 'syn_none'"):
        allocate(fitted, 100, languages=["syn_near", "syn_none"])
    with pytest.raises(
        ValueError, match=r"caps name \['syn_none'\], which are not among the languages"
    ):
        allocate(fitted, 100, caps={"syn_none": 5})
    with pytest.raises(
        ValueError, match=r"caps add up to 70 pairs, fewer than the budget 100.*infeasible"
    ):
        allocate(fitted, 100, caps={"syn_near": 30, "syn_far": 40})
    with pytest.warns(
        UserWarning, match=r"caps add up to 70 pairs.*allocating every pair that exists"
    ):
        allocation = allocate(
            fitted, 100, caps={"syn_near": 30, "syn_far": 40}, if_caps_short="use_all"
        )
    assert allocation.counts == {"syn_near": 30, "syn_far": 40}
    with pytest.raises(ValueError, match=r"brute force would enumerate"):
        allocate(random_fit(np.random.default_rng(0), 4), 10**6, step=1, search="brute_force")


def test_allocation_warns_where_it_extrapolates_below_the_data():
    sizes = [25, 50, 100, 200]
    steep = law("syn_near", 60, 50, 0.5, 10, pairs=sizes, scores=[30, 36, 42, 47])
    flat = law("syn_far", 30, 0.5, 0.5, 100, pairs=sizes, scores=[26, 27, 28, 28])
    fit = ScalingFit("chrf", {"syn_near": steep, "syn_far": flat})
    with pytest.warns(
        UserWarning,
        match=r"language 'syn_far' gets \d+ pairs, fewer than the smallest count its law was "
        r"fitted on \(25\).*minimums=\{'syn_far': 25\}",
    ):
        starved = allocate(fit, 400, step=1)
    assert starved.counts["syn_far"] < 25
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the data: no warning
        kept = allocate(fit, 400, step=1, minimums={"syn_far": 25})
    assert kept.counts["syn_far"] == 25


def test_allocation_file_round_trip(fitted, tmp_path):
    allocation = allocate(fitted, 10000, step=100)
    path = write_allocation(tmp_path / "allocation.yaml", allocation, direction="x-en")
    assert path.read_text().startswith("# lightning_xllama allocation file\n")
    document = read_allocation(path)
    assert (
        document["kind"] == "allocation"
        and document["budget"] == 10000
        and document["metric"] == "chrf"
    )
    assert {s["lang"]: s["count"] for s in document["streams"]} == allocation.counts
    assert {s["direction"] for s in document["streams"]} == {"syn_near-en", "syn_far-en"}
    assert document["optimised"]["predicted_total"] == pytest.approx(
        allocation.predicted_total, abs=1e-3
    )
    assert document["uniform"]["predicted_total"] == pytest.approx(
        allocation.uniform_total, abs=1e-3
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "kind: mixture\nstreams: []\n",
            r"a.yaml: expected a mapping with 'kind: allocation', found 'mixture'",
        ),
        ("kind: allocation\nstreams: []\n", r"a.yaml: 'streams' must be a non-empty list"),
        (
            "kind: allocation\nstreams:\n- {kind: parallel, lang: x, count: 3}\n- {kind: parallel, count: 3}\n",
            r"a.yaml: streams\[1\]: missing 'lang'",
        ),
        (
            "kind: allocation\nstreams:\n- {kind: parallel, lang: x, count: -3}\n",
            r"streams\[0\]: count must be a non-negative whole number, got -3",
        ),
        (
            "kind: allocation\nstreams:\n- {kind: parallel, lang: x, count: 1.5}\n",
            r"streams\[0\]: count must be a non-negative whole number, got 1.5",
        ),
        (
            "kind: allocation\nstreams:\n- {kind: parallel, lang: x}\n",
            r"streams\[0\]: needs a 'count' \(pairs\) or a 'weight'",
        ),
        (
            "kind: allocation\nbudget: 10\nstreams:\n- {kind: parallel, lang: x, count: 3}\n",
            r"stream counts add up to 3, not the budget 10",
        ),
        ("kind: allocation\nstreams: [\n", r"a.yaml: not valid YAML"),
    ],
)
def test_malformed_allocation_file(tmp_path, text, message):
    (tmp_path / "a.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_allocation(tmp_path / "a.yaml")


def test_weights_are_accepted_in_place_of_counts(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "kind: allocation\nstreams:\n- {kind: parallel, lang: x, weight: 0.3}\n"
    )
    assert read_allocation(tmp_path / "a.yaml")["streams"][0]["weight"] == 0.3


def test_commands_end_to_end(tmp_path, capsys):
    lines = ["language,pairs,metric,score,seed"]
    for language, (n, y) in noisy_points().items():
        lines += [
            f"{language},{int(p)},chrf_pp,{s:.3f},{i % 2}" for i, (p, s) in enumerate(zip(n, y))
        ]
        lines += [f"{language},{int(p)},bleu,{s / 2:.3f},0" for p, s in zip(n, y)]
    results = write_csv(tmp_path / "results.csv", lines)
    summary = fit_command(str(results), str(tmp_path / "fit"), n_bootstrap=20)
    assert (tmp_path / "fit" / "fit.json").is_file() and (tmp_path / "fit" / "fit.png").is_file()
    assert summary["languages"]["syn_near"]["s_max"] == pytest.approx(65, abs=3)
    printed = capsys.readouterr().out
    assert "syn_near" in printed and "syn_far" in printed and "R^2" in printed
    low, high = summary["languages"]["syn_near"]["intervals"]["s_max"]
    assert low < summary["languages"]["syn_near"]["s_max"] < high and "95%  s_max [" in printed
    old = fit_command(str(results), str(tmp_path / "old"), n_bootstrap=5, intervals="bootstrap")
    assert old["languages"]["syn_near"]["intervals"] == {}
    assert len(ScalingFit.load(old["fit"]).languages["syn_near"].bootstrap) == 5

    result = allocate_command(
        str(tmp_path / "fit"), 50000, str(tmp_path / "alloc"), caps={"syn_near": 10000}
    )
    document = read_allocation(result["allocation"])
    counts = {stream["lang"]: stream["count"] for stream in document["streams"]}
    assert sum(counts.values()) == 50000 and counts["syn_near"] <= 10000
    assert {stream["direction"] for stream in document["streams"]} == {"en-syn_near", "en-syn_far"}
    assert result["optimised"]["predicted_total"] >= result["uniform"]["predicted_total"]
    printed = capsys.readouterr().out
    assert "uniform" in printed and "optimised" in printed and "total" in printed
    assert not math.isnan(document["optimised"]["predicted_total"])
    exact = allocate_command(
        str(tmp_path / "fit"), 5000, str(tmp_path / "exact"), step=100, search="brute_force"
    )
    dynamic = allocate_command(
        str(tmp_path / "fit"), 5000, str(tmp_path / "dynamic"), step=100, search="dynamic"
    )
    assert dynamic["optimised"]["counts"] == exact["optimised"]["counts"]
