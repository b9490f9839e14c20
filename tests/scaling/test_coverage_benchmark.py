"""The interval-coverage benchmark: its data sets do not depend on how many processes fit them."""

import sys

import numpy as np
from paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from scaling_coverage import SCENARIOS, run, table  # noqa: E402


def test_coverage_is_the_same_with_one_process_or_two_and_covers_the_truth_mostly():
    alone = run(5, 3, 0, ["profile"], 0.95, seed=3, workers=1)
    shared = run(5, 3, 0, ["profile"], 0.95, seed=3, workers=2)
    assert sorted(alone) == sorted((s.name, "profile") for s in SCENARIOS)
    for key, entry in alone.items():
        for name in ("covered", "width", "auto_right"):
            np.testing.assert_array_equal(entry[name], shared[key][name])
        assert entry["covered"].shape == (1, 4)
        assert np.all(entry["width"] > 0)
    covered = np.concatenate([entry["covered"] for entry in alone.values()])
    assert covered.mean() >= 0.75  # 20 intervals at nominal 95%
    rows = table(alone, ["profile"])
    assert rows[-1].startswith("| all | profile | 5 |")
