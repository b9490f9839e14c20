"""Where things are, for the tests and the scripts they launch."""

from __future__ import annotations

import os
from pathlib import Path

HELPERS = Path(__file__).resolve().parent
"""This folder: the scripts tests launch as their own processes, and the code they share."""
REPO = HELPERS.parents[1]


def helper_env(**extra: str) -> dict[str, str]:
    """The environment of a launched helper script: the helpers and the repository importable."""
    return {
        **os.environ,
        "PYTHONPATH": f"{HELPERS}{os.pathsep}{REPO}",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
