"""Scaling laws for parallel data, and the split of a pair budget across languages they imply.

Translation quality grows with the number of parallel pairs, with decreasing returns whose pace
depends on the language (how close it is to English). The flow, one module per step:

    sweep       train per language x pair count, append the scores to a results table
    results     that table's one schema (read by the fit, appended to by the sweep)
    forms       the law's shapes: S(n) = S_max - A (1 + n/n0)^-alpha (the paper's power law) or
                S_max - A exp(-(n/n0)^alpha), S_max held to the metric's maximum
    law         the fitted law of each language (fit.json)
    fit         fitting it per language or with a shared exponent
    profile     profile-likelihood intervals of a language's parameters and predictions
    validation  the law judged out of sample: fitted on the smaller sizes, predicting the largest
    plots       the fit's figure (fit.png)
    allocation  a pair budget split across languages (allocation.yaml), which
                lightning_xllama.data.allocation reads back for the MuIT DataModule

This package imports scipy and matplotlib; ``lightning_xllama.commands.sweep`` (training) is left
out of it so that fitting does not load Lightning's training stack.
"""

from lightning_xllama.data.allocation import ALLOCATION_HEADER, read_allocation
from lightning_xllama.scaling.allocation import (
    MAX_BRUTE_FORCE,
    Allocation,
    allocate,
    write_allocation,
)
from lightning_xllama.scaling.fit import fit_scaling
from lightning_xllama.scaling.forms import (
    ALPHA_BOUNDS,
    FORMS,
    METRIC_CEILINGS,
    inverse_law,
    inverse_power_law,
    law_curve,
    power_law,
    stretched_exp_law,
)
from lightning_xllama.scaling.law import Estimate, LanguageFit, ScalingFit
from lightning_xllama.scaling.plots import plot_fits
from lightning_xllama.scaling.results import (
    REQUIRED_FIELDS,
    RESULT_FIELDS,
    Points,
    read_results,
    seed_spread,
)
from lightning_xllama.scaling.validation import OutOfSample, out_of_sample

__all__ = [
    "ALLOCATION_HEADER",
    "ALPHA_BOUNDS",
    "Allocation",
    "Estimate",
    "FORMS",
    "LanguageFit",
    "MAX_BRUTE_FORCE",
    "METRIC_CEILINGS",
    "OutOfSample",
    "Points",
    "REQUIRED_FIELDS",
    "RESULT_FIELDS",
    "ScalingFit",
    "allocate",
    "fit_scaling",
    "inverse_law",
    "inverse_power_law",
    "law_curve",
    "out_of_sample",
    "plot_fits",
    "power_law",
    "read_allocation",
    "read_results",
    "seed_spread",
    "stretched_exp_law",
    "write_allocation",
]
