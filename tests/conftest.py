"""Shared fixtures: a tiny version of the demo's assets, built once per test session.

Everything goes through the real code path: the synthetic world writes its files, a
SentencePiece tokenizer is trained on them, and a small LLaMA is pretrained for a few steps and
saved, then loaded back with ``from_pretrained`` wherever it is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_xllama.demo.languages  # noqa: F401  the demo plug-in: syn_near, syn_far registered
from lightning_xllama.demo.layout import DemoLayout

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per test worker (``make test`` runs one worker per core): tiny models gain
    # nothing from intra-op threads, and OpenMP threads of two workers spin against each other.
    # Subprocesses (CLI runs, 2-rank launches) inherit the setting.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
sys.path.insert(
    0, str(REPO / "tests" / "helpers")
)  # the code the tests share, and the scripts they launch
TINY_DEMO = dict(
    pretraining=1500,
    instructions=120,
    parallel=200,
    vocab_size=900,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    pretrain_steps=4,
    pretrain_learning_rate=3e-3,
    seed=0,
)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A working directory laid out like the repo after ``prepare-demo`` (tiny sizes)."""
    from lightning_xllama.demo.prepare import prepare_demo

    root = tmp_path_factory.mktemp("demo_root")
    prepare_demo(output_dir=str(root / "artifacts" / "demo"), **TINY_DEMO)
    (root / "configs").mkdir()
    (root / "configs" / "demo.yaml").write_text((REPO / "configs" / "demo.yaml").read_text())
    return root


@pytest.fixture(scope="session")
def tiny_model(demo_root) -> str:
    return str(DemoLayout(demo_root / "artifacts" / "demo").base_model)


@pytest.fixture(scope="session")
def tiny_data(demo_root) -> Path:
    return demo_root / "artifacts" / "demo" / "data"


@pytest.fixture(scope="session")
def family_models(tiny_model, tiny_data, tmp_path_factory) -> dict[str, str]:
    """Folder of each model family's tiny model (``tests/helpers/families.py``), by family."""
    from families import FAMILIES, build_family

    root = tmp_path_factory.mktemp("families")
    return {f: str(build_family(f, Path(tiny_model), tiny_data, root / f)) for f in FAMILIES}


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m lightning_xllama ARGS`` in ``cwd``, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_xllama", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
