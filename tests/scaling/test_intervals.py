"""Intervals whose coverage holds: profile likelihood, checked against laws with known parameters."""

import math
import warnings

import numpy as np
import pytest

from lightning_xllama.scaling import ScalingFit, fit_scaling, inverse_power_law, power_law
from lightning_xllama.scaling.law import ALPHA_BOUNDS
from lightning_xllama.scaling.profile import Profile

TRUTH = (34.0, 30.0, 0.6, 3000.0)  # Romanian-like: the case where the bootstrap covered 31-33/40
SIZES = np.repeat([1000.0 * 2**k for k in range(8)], 3)  # 8 sizes x 3 seeds
NOISE = 0.8
NAMES = ("s_max", "a", "alpha", "n0")


def draw(rng):
    return {"ro": (SIZES, power_law(SIZES, *TRUTH) + NOISE * rng.standard_normal(len(SIZES)))}


def test_profile_intervals_cover_the_truth_at_about_their_level():
    # the profile alone (what fit_scaling stores, less the multi-start fit): cheap enough for 40
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(40):
        n, y = draw(rng)["ro"]
        profile = Profile(n, y, ALPHA_BOUNDS)
        intervals = [profile.interval(name) for name in NAMES]
        covered.append([low <= t <= high for (low, high), t in zip(intervals, TRUTH)])
    coverage = np.mean(covered, axis=0)
    # 95% nominal; 40 data sets give a binomial sd of 3.4 points
    assert np.all(coverage >= 0.85), dict(zip(NAMES, coverage))
    assert np.mean(coverage) >= 0.9


def test_a_known_case_contains_the_truth_in_parameters_predictions_and_pairs_needed(tmp_path):
    fit = fit_scaling(draw(np.random.default_rng(3)), "bleu")
    law = fit.languages["ro"]
    assert fit.languages["ro"].bootstrap == []  # the profile replaces the bootstrap here
    for name, truth in zip(NAMES, TRUTH):
        low, high = law.intervals[name]
        assert low <= getattr(law, name) <= high and low <= truth <= high, name
    grid = np.array([500.0, 4000.0, 60000.0, 128000.0])
    band = fit.predict("ro", grid)
    assert np.all(band.low < band.value) and np.all(band.value < band.high)
    assert np.all((band.low <= power_law(grid, *TRUTH)) & (power_law(grid, *TRUTH) <= band.high))
    needed = fit.pairs_needed("ro", 25.0)
    assert needed.low <= inverse_power_law(25.0, *TRUTH) <= needed.high
    assert needed.low < needed.value < needed.high < math.inf
    again = ScalingFit.load(fit.save(tmp_path / "fit.json"))
    assert again.languages["ro"].intervals == law.intervals
    assert again.predict("ro", 4000.0) == fit.predict("ro", 4000.0)


def test_profile_interval_narrows_with_more_seeds_and_widens_with_the_level():
    rng = np.random.default_rng(0)
    one = np.repeat([1000.0 * 2**k for k in range(8)], 1)
    many = np.repeat(one, 6)
    y_one = power_law(one, *TRUTH) + NOISE * rng.standard_normal(len(one))
    y_many = power_law(many, *TRUTH) + NOISE * rng.standard_normal(len(many))
    width = {
        key: np.subtract(*Profile(n, y, ALPHA_BOUNDS, level).interval("s_max")[::-1])
        for key, (n, y, level) in {
            "one": (one, y_one, 0.95),
            "many": (many, y_many, 0.95),
            "many_99": (many, y_many, 0.99),
        }.items()
    }
    assert width["many"] < width["one"] and width["many"] < width["many_99"]


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="intervals must be 'profile' or 'bootstrap'"):
        fit_scaling(draw(np.random.default_rng(0)), "bleu", intervals="wald")
    with pytest.raises(ValueError, match="more than 4 points"):
        Profile(SIZES[:4], power_law(SIZES[:4], *TRUTH), ALPHA_BOUNDS)
    with pytest.raises(ValueError, match="unknown parameter 'k'"):
        Profile(SIZES, power_law(SIZES, *TRUTH) + 0.1 * np.sin(SIZES), ALPHA_BOUNDS).interval("k")


def test_four_points_fall_back_to_the_bootstrap():
    sizes = np.array([100.0, 400.0, 1600.0, 6400.0])
    points = {"x": (sizes, power_law(sizes, *TRUTH))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an exact fit's zero-width band warns
        law = fit_scaling(points, "bleu", n_bootstrap=5).languages["x"]
    assert law.intervals == {} and len(law.bootstrap) == 5
