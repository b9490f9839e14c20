"""The reproduction's verdict rules: paired t intervals over seeds, undecided below three seeds."""

import sys

import pytest
from paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from reproduction.claims import MIN_SEEDS, Paired, judge  # noqa: E402


def test_paired_interval_is_the_t_interval_of_the_differences():
    paired = Paired.of([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975; 2) = 4.303: half width 4.303 / sqrt(3)
    assert paired.mean == 2.0 and paired.seeds == 3
    assert paired.low == pytest.approx(2 - 2.4842, abs=1e-3)
    assert paired.high == pytest.approx(2 + 2.4842, abs=1e-3)
    assert not paired.above_zero and str(paired) == "+2.00 [-0.48, +4.48] (3 seeds)"
    assert Paired.of([1.0, 1.1, 0.9, 1.05]).above_zero


def test_verdict_needs_three_seeds_and_an_interval_above_zero():
    two = Paired.of([5.0, 6.0])
    assert judge(True, [two]) == f"undecided (fewer than {MIN_SEEDS} seeds)"
    clear, unclear = Paired.of([5.0, 6.0, 5.5]), Paired.of([-1.0, 2.0, 0.5])
    assert judge(clear.above_zero, [clear]) == "reproduced"
    assert judge(unclear.above_zero, [unclear]) == "not reproduced"
    assert judge(False, []) == "not reproduced"


def test_probe_curves_are_in_layer_order_past_ten_layers():
    from reproduction.claims import FAR, probe_curve

    values = {f"val/probe/en-{FAR}/layer{i}/cosine_gap": (0, float(i)) for i in range(12)}
    assert probe_curve({"last": values}, "last", "cosine_gap").tolist() == list(range(12))
