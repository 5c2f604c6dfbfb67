"""Reference computations the tests check cavga against, written the plain way."""

from __future__ import annotations


def conformal_by_hand(held, quantile: float) -> float:
    """The smallest held-out score that at least ``quantile`` of n + 1 exchangeable scores stay at or
    below (infer.normalizer_rank: conformal); the largest where no held-out score is that high."""
    ordered = sorted(float(v) for v in held)
    n = len(ordered)
    return next((v for k, v in enumerate(ordered, 1) if k >= quantile * (n + 1) - 1e-9), ordered[-1])
