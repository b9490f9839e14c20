"""Regression tests: the shared fit's size requirement, brute force at caps, fit.png tick labels."""

import itertools

import numpy as np
import pytest
from scaling_laws import law, random_fit

from lightning_xllama.scaling import ScalingFit, allocate, fit_scaling, power_law
from lightning_xllama.scaling import law as law_module
from lightning_xllama.scaling.plots import fit_figure

SHARED = {  # one A and alpha, a ceiling and n0 per language
    "syn_near": (65.0, 40.0, 0.6, 500.0),
    "syn_mid": (58.0, 40.0, 0.6, 1500.0),
    "syn_far": (50.0, 40.0, 0.6, 5000.0),
}


def exact_points(sizes):
    return {
        language: (
            np.array(sizes[language], float),
            power_law(np.array(sizes[language], float), *params),
        )
        for language, params in SHARED.items()
    }


def test_shared_fit_states_its_true_size_requirement_and_fits_at_it():
    # with two sizes, a language's (S_max, n0) has two exact solutions: three are required
    two_for_mid = {
        "syn_near": [1000, 10000, 100000],
        "syn_mid": [1000, 30000],
        "syn_far": [1000, 10000, 100000],
    }
    with pytest.raises(
        ValueError,
        match=r"'syn_mid' has 2 distinct pair count\(s\) \[1000, 30000\] for chrf, "
        r"fewer than the 3 its shared-exponent law needs \(two sizes fit its S_max and n0 "
        r"exactly in two different ways\)",
    ):
        fit_scaling(exact_points(two_for_mid), "chrf", shared_exponent=True, n_bootstrap=0)
    assert "two data sizes per language instead of four" not in law_module.__doc__
    assert "three data sizes per language" in law_module.__doc__

    three_each = {**two_for_mid, "syn_mid": [1000, 30000, 300000]}
    fit = fit_scaling(exact_points(three_each), "chrf", shared_exponent=True, n_bootstrap=0)
    for language, (s_max, a, alpha, n0) in SHARED.items():
        found = fit.languages[language]
        assert found.alpha == pytest.approx(alpha, abs=0.02)
        assert found.a == pytest.approx(a, rel=0.05)
        assert found.s_max == pytest.approx(s_max, abs=0.5)
        assert found.n0 == pytest.approx(n0, rel=0.1)


def test_brute_force_reaches_a_cap_off_the_step_grid():
    # the steep language gains most up to its cap of 7, which steps of 5 from 0 never reach
    fit = ScalingFit(
        "chrf",
        {
            "syn_steep": law("syn_steep", 50, 40, 1.0, 1),
            "syn_slow": law("syn_slow", 50, 10, 0.5, 100),
        },
    )
    options = dict(caps={"syn_steep": 7}, step=5)
    greedy = allocate(fit, 20, **options)
    brute = allocate(fit, 20, search="brute_force", **options)
    assert greedy.counts == {"syn_steep": 7, "syn_slow": 13}
    assert brute.counts == greedy.counts
    assert brute.objective_value >= greedy.objective_value - 1e-12


@pytest.mark.parametrize("objective", ["sum", "min"])
def test_brute_force_is_never_below_greedy_with_caps_and_budgets_off_the_grid(objective):
    rng = np.random.default_rng(3)
    for _ in range(12):
        fit = random_fit(rng, int(rng.integers(2, 4)))
        languages = fit.languages
        step = 5
        caps = {name: int(rng.integers(3, 60)) for name in languages}
        minimums = {name: int(rng.integers(0, min(cap, 9) + 1)) for name, cap in caps.items()}
        budget = int(rng.integers(sum(minimums.values()), sum(caps.values()) + 1))
        options = dict(objective=objective, caps=caps, minimums=minimums, step=step)
        greedy = allocate(fit, budget, **options)
        brute = allocate(fit, budget, search="brute_force", **options)
        assert brute.budget == greedy.budget == budget
        assert all(minimums[name] <= count <= caps[name] for name, count in brute.counts.items())
        assert brute.objective_value >= greedy.objective_value - 1e-9


def overlapping_tick_labels(figure):
    """Pairs of x tick labels, within a panel's view, whose drawn boxes overlap."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = []
    for axis in figure.axes:
        if not axis.get_visible():
            continue
        low, high = axis.get_xlim()
        labels = [
            tick.label1
            for tick in axis.xaxis.get_major_ticks()
            if low <= tick.get_loc() <= high
            and tick.label1.get_visible()
            and tick.label1.get_text()
        ]
        assert len(labels) >= 3, [label.get_text() for label in labels]
        boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in labels]
        found += [
            (a, b)
            for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.overlaps(box_b)
        ]
    return found


@pytest.mark.parametrize("smallest", [1, 250, 900, 1000, 5000])
def test_fit_png_tick_labels_do_not_overlap(smallest):
    params = (65.0, 45.0, 0.7, 800.0)
    pairs = np.array([0, *(smallest * 2.0**k for k in range(8))])
    fit = ScalingFit(
        "chrf",
        {
            name: law(
                name, *params, pairs=pairs.tolist(), scores=power_law(pairs, *params).tolist()
            )
            for name in ("syn_a", "syn_b")
        },
    )
    figure = fit_figure(fit)
    assert overlapping_tick_labels(figure) == []
    labels = {
        tick.get_loc(): tick.label1.get_text() for tick in figure.axes[0].xaxis.get_major_ticks()
    }
    first_decade = 10.0 ** np.floor(np.log10(smallest))
    assert labels[0.0] and labels[first_decade]  # 0 and the first decade both labelled, apart
