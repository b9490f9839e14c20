"""The reproduction's science world: big enough that pairs keep teaching into the thousands."""

import sys

import pytest
from paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from reproduction.world import ScienceWorld  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return ScienceWorld(["syn_near", "syn_far"])


def test_test_words_seen_keep_rising_into_the_thousands_of_pairs(world):
    pairs = world.parallel("syn_far", 3200)
    test_words = {w for _, t in world.translation_test("syn_far", 200) for w in t[:-1].split()}

    def seen(n):
        words = {w for _, t in pairs[:n] for w in t[:-1].split()}
        return len(test_words & words) / len(test_words)

    shares = [seen(n) for n in (100, 400, 1600, 3200)]
    assert shares == sorted(shares) and shares[0] < 0.6 and shares[1] < 0.85
    assert shares[2] - shares[1] > 0.1  # still learning between 400 and 1600 pairs
    assert shares[3] > 0.9


def test_pairs_are_distinct_and_disjoint_from_the_test_set(world):
    pairs = world.parallel("syn_near", 1000)
    test = world.translation_test("syn_near", 200)
    assert len(set(pairs)) == 1000 and not set(pairs) & set(test)


def test_far_language_marks_plural_and_object_case_unlike_english(world):
    far, near = world.targets["syn_far"], world.targets["syn_near"]
    assert far.object_case and far.plural != "s" and near.object_case == ""
    english, target = world.parallel("syn_far", 1)[0]
    assert english.startswith(("the", "a", "some")) and target[0] in "абцдефгхийклмнопкрстувшксз"


def test_writes_every_file_of_the_demo_layout(world, tmp_path):
    from lightning_xllama.data.sources import read_instructions
    from lightning_xllama.demo.layout import DataLayout

    world.write(tmp_path, pretraining=50, instructions=10, parallel=30, test=10, qa=5)
    layout = DataLayout(tmp_path)
    for lang in ("syn_near", "syn_far"):
        assert all(path.is_file() for path in layout.required(lang, True))
        assert len(list(read_instructions(str(layout.instructions(lang))))) == 10
