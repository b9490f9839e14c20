"""``lightning_xllama.strategies.<Class>``: the names configs use for the sharding strategies,
which live in :mod:`lightning_xllama.training.strategies`."""

from lightning_xllama.training.strategies import *  # noqa: F403
from lightning_xllama.training.strategies import __all__  # noqa: F401
