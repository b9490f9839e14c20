"""Laws with known parameters, for the allocation and fit tests."""

from __future__ import annotations

from lightning_xllama.scaling import LanguageFit, ScalingFit


def law(language, s_max, a, alpha, n0, pairs=(), scores=()) -> LanguageFit:
    """A fitted law of chrF with the given parameters (and, optionally, the points behind it)."""
    return LanguageFit(
        language, "chrf", s_max, a, alpha, n0, pairs=list(pairs), scores=list(scores)
    )


def random_fit(rng, count: int) -> ScalingFit:
    """``count`` languages with concave laws drawn from ``rng``."""
    languages = {
        f"syn_{i}": law(
            f"syn_{i}",
            rng.uniform(30, 70),
            rng.uniform(10, 40),
            rng.uniform(0.2, 1.5),
            rng.uniform(1, 50),
        )
        for i in range(count)
    }
    return ScalingFit("chrf", languages)
