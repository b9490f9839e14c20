"""The reproduction's science world extends the demo world instead of copying it, and neither
world's files change: both are pinned by a digest of a small ``write``."""

import hashlib
import sys
from pathlib import Path

from paths import REPO

from lightning_xllama.demo.world import Clause, SyntheticWorld

sys.path.insert(0, str(REPO / "benchmarks"))
from reproduction.world import ScienceWorld  # noqa: E402

SIZES = dict(pretraining=400, instructions=60, parallel=120, test=30, qa=10)


def digest(world: SyntheticWorld, out: Path) -> str:
    """sha256 over every written file's relative path and bytes, in path order."""
    world.write(out, **SIZES)
    hashed = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        hashed.update(str(path.relative_to(out)).encode())
        hashed.update(path.read_bytes())
    return hashed.hexdigest()


def test_the_demo_world_writes_the_same_files(tmp_path):
    world = SyntheticWorld(["syn_near", "syn_far"], seed=3)
    assert digest(world, tmp_path) == (
        "c397c6127b87520e3389c1372e69e8182fa3a0d3a22d321250d357601b873ef5"
    )


def test_the_science_world_writes_the_same_files(tmp_path):
    world = ScienceWorld(["syn_near", "syn_far"], seed=1)
    assert digest(world, tmp_path) == (
        "215f5d2e0029b14f985d1e7ee3d1cd51e6e202eb46cf982b5b1a5b8ac3fb2d8e"
    )


def test_the_science_world_draws_its_clauses_into_the_demo_generators():
    """Only the grammar and the rendering are its own; the corpora come from the demo world."""
    for generator in ("_clauses", "parallel", "translation_test", "_distinct_subjects", "write"):
        assert generator not in vars(ScienceWorld), generator
    world = ScienceWorld(["syn_far"], seed=1)
    clauses = world._clauses("test", 5)
    assert all(isinstance(c, Clause) and isinstance(c.verb, str) for c in clauses)
    test = world.translation_test("syn_far", 5)
    assert test == [
        (world.english.sentence(c), world.targets["syn_far"].sentence(c)) for c in clauses
    ]
    assert not set(world.parallel("syn_far", 200)) & set(world.translation_test("syn_far", 200))
