"""Out-of-sample validation of the law, and the seed spread shown beside it."""

import numpy as np
import pytest

from lightning_xllama.scaling import ScalingFit, fit_scaling, out_of_sample, power_law, seed_spread
from lightning_xllama.scaling.plots import fit_figure

TRUTH = (62.0, 55.0, 1.0, 150.0)
SIZES = np.repeat([16.0 * 2**k for k in range(8)], 3)


def noisy(seed, noise=1.0):
    rng = np.random.default_rng(seed)
    return SIZES, power_law(SIZES, *TRUTH) + noise * rng.standard_normal(len(SIZES))


def test_out_of_sample_predicts_the_largest_size_of_a_known_law():
    n, y = noisy(1)
    found = out_of_sample({"syn": (n, y)}, "chrf")["syn"]
    assert found.pairs == 2048 and found.fitted_sizes == [16.0 * 2**k for k in range(7)]
    assert found.seeds == 3 and found.observed == pytest.approx(y[n == 2048].mean())
    assert found.observed_sd == pytest.approx(y[n == 2048].std(ddof=1))
    assert abs(found.error) < 2.0 and found.covered
    assert found.low < power_law(2048.0, *TRUTH) < found.high
    assert found.error == pytest.approx(found.predicted - found.observed)


def test_out_of_sample_never_sees_the_largest_size():
    n, y = noisy(2)
    moved = y.copy()
    moved[n == n.max()] += 30.0  # the measurement at the largest size jumps far off the law
    honest, broken = (out_of_sample({"syn": (n, v)}, "chrf")["syn"] for v in (y, moved))
    assert broken.predicted == pytest.approx(honest.predicted)
    assert broken.observed == pytest.approx(honest.observed + 30.0)
    assert honest.covered and not broken.covered


def test_out_of_sample_needs_five_sizes():
    n = np.array([10.0, 20.0, 40.0, 80.0])
    with pytest.raises(ValueError, match="'syn': 4 distinct sizes .* needs 5"):
        out_of_sample({"syn": (n, power_law(n, *TRUTH))}, "chrf")


def test_seed_spread_per_size():
    n = np.array([10.0, 10.0, 10.0, 20.0, 40.0, 40.0])
    y = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 9.0])
    sizes, means, sd, runs = seed_spread(n, y)
    assert sizes.tolist() == [10, 20, 40] and means.tolist() == [2, 5, 8]
    assert runs.tolist() == [3, 1, 2]
    assert sd[0] == pytest.approx(1.0) and np.isnan(sd[1]) and sd[2] == pytest.approx(np.sqrt(2))


def test_plot_shows_each_sizes_seed_spread_as_error_bars():
    fit = fit_scaling({"syn": noisy(0)}, "chrf")
    axis = fit_figure(fit).axes[0]
    labels = axis.get_legend_handles_labels()[1]
    assert "mean ± sd over seeds" in labels and "95% profile band" in labels
    single = ScalingFit("chrf", {"syn": fit.languages["syn"]})
    single.languages["syn"].pairs = sorted(set(SIZES.tolist()))
    single.languages["syn"].scores = power_law(np.array(single.languages["syn"].pairs), *TRUTH)
    assert "mean ± sd over seeds" not in fit_figure(single).axes[0].get_legend_handles_labels()[1]


def test_out_of_sample_with_one_run_per_size_asks_for_more():
    """Four runs below the largest size fit the law's four parameters exactly: no error is left
    to size an interval, so the check refuses rather than report a zero-width interval."""
    sizes = np.array([16.0 * 2**k for k in range(5)])
    with pytest.raises(ValueError, match="more sizes or more seeds"):
        out_of_sample({"syn": (sizes, power_law(sizes, *TRUTH))}, "chrf")
