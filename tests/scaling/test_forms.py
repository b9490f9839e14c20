"""The law's two forms, the metric's ceiling on S_max, and allocation with laws that speed up."""

import math

import numpy as np
import pytest

from lightning_xllama.commands.scaling import fit_command
from lightning_xllama.scaling import (
    LanguageFit,
    ScalingFit,
    allocate,
    fit_scaling,
    inverse_law,
    law_curve,
    out_of_sample,
    power_law,
    stretched_exp_law,
)

SIZES = np.repeat(25.0 * 2.0 ** np.arange(8), 3)  # 25 ... 3,200 pairs, three seeds each
STEEP = (100.0, 75.0, 1.2, 1500.0)
"""A chrF++ curve like the science world's: slow, then closing its gap to 100 fast."""


def steep_points(noise=1.5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "syn": (SIZES, stretched_exp_law(SIZES, *STEEP) + noise * rng.standard_normal(len(SIZES)))
    }


@pytest.mark.parametrize("form", ["power", "stretched_exp"])
def test_inverse_law_undoes_the_curve(form):
    params = (60.0, 40.0, 0.8, 300.0)
    for n in (0.0, 10.0, 300.0, 5000.0):
        score = float(law_curve(form, n, *params))
        assert inverse_law(form, score, *params) == pytest.approx(n, rel=1e-6, abs=1e-6)
    assert inverse_law(form, 60.0, *params) == math.inf
    assert inverse_law(form, 19.0, *params) == 0.0


def test_a_metric_with_a_maximum_holds_the_ceiling_below_it():
    points = steep_points()
    bare = fit_scaling(points, "chrf_pp", form="power", ceiling=math.inf)
    assert bare.languages["syn"].s_max > 100 and bare.ceiling is None  # beyond the metric
    with pytest.warns(UserWarning, match=r"'syn'.*held at chrf_pp's maximum 100"):
        held = fit_scaling(points, "chrf_pp", form="power")
    law = held.languages["syn"]
    assert held.ceiling == 100 and law.s_max <= 100 and law.intervals["s_max"][1] <= 100
    assert np.all(held.predict("syn", np.geomspace(1, 1e6, 50)).high <= 100 + 1e-9)
    # a metric with no known maximum keeps the data's range only
    assert fit_scaling(points, "score", form="power").ceiling is None


def test_scores_above_the_metric_maximum_are_refused():
    n = SIZES[:12]
    with pytest.raises(
        ValueError, match=r"'syn': a bleu score of 104 is above the metric's maximum 100"
    ):
        fit_scaling({"syn": (n, np.linspace(40, 104, len(n)))}, "bleu")
    fit = fit_scaling({"syn": (n, np.linspace(0.4, 1.04, len(n)))}, "bleu", ceiling=2.0)
    assert fit.ceiling == 2.0


def test_auto_picks_the_form_the_data_were_drawn_from():
    steep = fit_scaling(steep_points(noise=0.5), "chrf_pp", form="auto")
    assert steep.languages["syn"].model == "stretched_exp"
    assert steep.languages["syn"].alpha == pytest.approx(STEEP[2], abs=0.15)
    rng = np.random.default_rng(1)
    slow = (70.0, 50.0, 0.5, 100.0)  # a power law whose returns fade slowly
    drawn = power_law(SIZES, *slow) + 0.5 * rng.standard_normal(len(SIZES))
    assert (
        fit_scaling({"syn": (SIZES, drawn)}, "chrf_pp", form="auto").languages["syn"].model
        == "power"
    )
    with pytest.raises(
        ValueError, match=r"form must be one of \('power', 'stretched_exp', 'auto'\)"
    ):
        fit_scaling(steep_points(), "chrf_pp", form="logistic")


def test_the_stretched_form_has_profile_intervals_that_hold_the_truth(tmp_path):
    fit = fit_scaling(steep_points(seed=3), "chrf_pp", form="stretched_exp")
    law = fit.languages["syn"]
    assert law.model == "stretched_exp" and law.intervals
    for name, true in zip(("s_max", "a", "alpha", "n0"), STEEP):
        low, high = law.intervals[name]
        assert low <= true <= high, name
    band = fit.predict("syn", 6400.0)
    assert band.low <= stretched_exp_law(6400.0, *STEEP) <= band.high
    needed = fit.pairs_needed("syn", 90.0)
    assert needed.low <= inverse_law("stretched_exp", 90.0, *STEEP) <= needed.high
    loaded = ScalingFit.load(fit.save(tmp_path / "fit.json"))
    assert loaded.languages["syn"].model == "stretched_exp" and loaded.ceiling == 100
    assert loaded.predict("syn", 6400.0) == pytest.approx(band)


def test_out_of_sample_chooses_the_form_on_the_smaller_sizes_only():
    points = steep_points(seed=5)
    bare = out_of_sample(points, "chrf_pp", form="power", ceiling=math.inf)["syn"]
    held = out_of_sample(points, "chrf_pp", form="auto")["syn"]
    assert held.model == "stretched_exp" and bare.model == "power"
    assert held.covered and held.high <= 100
    assert abs(held.error) < abs(bare.error)


def speeding_up():
    """Two laws that start slow and speed up: a step's gain understates the next ones'."""
    return ScalingFit(
        "chrf",
        {
            "syn_a": LanguageFit("syn_a", "chrf", 60.0, 50.0, 3.0, 30.0, model="stretched_exp"),
            "syn_b": LanguageFit("syn_b", "chrf", 55.0, 45.0, 2.5, 25.0, model="stretched_exp"),
        },
    )


def test_the_sum_of_laws_that_speed_up_is_maximised_by_the_dynamic_search():
    fit = speeding_up()
    assert not any(law.concave for law in fit.languages.values())
    greedy = allocate(fit, 60, "sum", search="greedy", step=1)
    chosen = allocate(fit, 60, "sum", step=1)  # auto: dynamic for these laws
    brute = allocate(fit, 60, "sum", search="brute_force", step=1)
    assert chosen.objective_value == pytest.approx(brute.objective_value)
    assert chosen.objective_value > greedy.objective_value + 1.0
    assert chosen.objective_value >= chosen.uniform_total - 1e-9


@pytest.mark.parametrize("budget", [37, 60, 83])
def test_the_dynamic_search_matches_brute_force_off_the_grid(budget):
    options = dict(step=4, caps={"syn_a": 33}, minimums={"syn_b": 3})
    dynamic = allocate(speeding_up(), budget, "sum", search="dynamic", **options)
    brute = allocate(speeding_up(), budget, "sum", search="brute_force", **options)
    assert dynamic.budget == brute.budget == budget
    assert dynamic.counts["syn_a"] <= 33 and dynamic.counts["syn_b"] >= 3
    assert dynamic.objective_value >= brute.objective_value - 1e-9


def random_law(rng, language: str, s_max=(40, 80), gap=(20, 40)) -> LanguageFit:
    """A stretched law with random parameters; alpha up to 3 (far from concave)."""
    return LanguageFit(
        language,
        "chrf",
        rng.uniform(*s_max),
        rng.uniform(*gap),
        rng.uniform(0.5, 3.0),
        rng.uniform(5, 30),
        model="stretched_exp",
    )


@pytest.mark.parametrize("objective", ["sum", "min"])
def test_the_dynamic_search_is_never_below_brute_force_on_random_laws(objective):
    rng = np.random.default_rng(7)
    for _ in range(100):
        count = int(rng.integers(2, 4))
        fit = ScalingFit("chrf", {f"syn_{i}": random_law(rng, f"syn_{i}") for i in range(count)})
        budget, step = int(rng.integers(10, 60)), int(rng.integers(1, 9))
        capped = f"syn_{int(rng.integers(0, count))}"  # first or last: the order matters to a DP
        caps = {capped: int(rng.integers(budget // 2, budget + 1))}
        minimums = {"syn_1": int(rng.integers(0, 5))}
        options = dict(step=step, caps=caps, minimums=minimums)
        dynamic = allocate(fit, budget, objective, search="dynamic", **options)
        brute = allocate(fit, budget, objective, search="brute_force", **options)
        assert dynamic.budget == budget and dynamic.counts[capped] <= caps[capped]
        assert dynamic.objective_value == pytest.approx(brute.objective_value, abs=1e-9)
        # ties on the minimum go to the larger sum, as in the brute force
        assert dynamic.predicted_total == pytest.approx(brute.predicted_total, abs=1e-9)


def test_under_min_the_dynamic_search_breaks_ties_on_the_sum_as_brute_force_does():
    """A low-scoring language capped last holds the minimum whatever the others get: among the
    allocations that reach it, the largest sum (a one-pass DP keeps a partial state's larger
    minimum and loses it)."""
    rng = np.random.default_rng(1)
    for _ in range(60):
        count = int(rng.integers(3, 5))
        laws = {f"syn_{i}": random_law(rng, f"syn_{i}") for i in range(count - 1)}
        low = f"syn_{count - 1}"
        laws[low] = random_law(rng, low, s_max=(10, 30), gap=(5, 5))
        options = dict(step=int(rng.integers(2, 6)), caps={low: int(rng.integers(1, 6))})
        budget = int(rng.integers(10, 40))
        dynamic = allocate(ScalingFit("chrf", laws), budget, "min", search="dynamic", **options)
        brute = allocate(ScalingFit("chrf", laws), budget, "min", search="brute_force", **options)
        assert dynamic.objective_value == pytest.approx(brute.objective_value, abs=1e-9)
        assert dynamic.predicted_total == pytest.approx(brute.predicted_total, abs=1e-9)


def test_the_fit_command_takes_the_form_and_the_ceiling(tmp_path, capsys):
    n, y = steep_points()["syn"]
    lines = ["language,pairs,metric,score"] + [f"syn,{p:.0f},chrf_pp,{s:.3f}" for p, s in zip(n, y)]
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    summary = fit_command(str(tmp_path / "results.csv"), str(tmp_path / "fit"), form="auto")
    assert summary["languages"]["syn"]["model"] == "stretched_exp"
    assert summary["languages"]["syn"]["s_max"] <= 100
    assert "stretched_exp" in capsys.readouterr().out
    lifted = fit_command(
        str(tmp_path / "results.csv"), str(tmp_path / "bare"), form="power", ceiling=math.inf
    )
    assert lifted["languages"]["syn"]["s_max"] > 100
