"""The run's seeds: ``seed_everything`` (model initialisation, dropout, sampling) and the data
seed (held-out split, paraphrase choice, every shuffle), which follows it unless set.

A data module built with ``seed: null`` takes the seed ``seed_everything`` set in this process
(Lightning keeps it in the ``PL_GLOBAL_SEED`` environment variable, which also reaches the
processes it launches); the CLI writes that value into the data module's settings before it
builds them, so ``config.yaml`` and ``run.json`` name it. Without any seed set, :data:`DEFAULT_DATA_SEED`.
"""

from __future__ import annotations

import os
from typing import Optional

DEFAULT_DATA_SEED = 42
"""The data seed when neither the data module nor ``seed_everything`` sets one."""
GLOBAL_SEED_VARIABLE = "PL_GLOBAL_SEED"
"""Where ``lightning.seed_everything`` records the seed it set."""


def run_seed() -> Optional[int]:
    """The seed ``seed_everything`` set in this process (or its launcher), or None."""
    value = os.environ.get(GLOBAL_SEED_VARIABLE)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def data_seed(seed: Optional[int]) -> int:
    """``seed`` when given, else the run's seed (:func:`run_seed`), else :data:`DEFAULT_DATA_SEED`."""
    if seed is not None:
        return seed
    found = run_seed()
    return DEFAULT_DATA_SEED if found is None else found
