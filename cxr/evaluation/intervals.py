"""Exact binomial intervals for the readout's promises: how sure a validation rate is
(Clopper-Pearson), and what share of in-distribution films a conformal OOD threshold flags.

    >>> from cxr.evaluation.intervals import clopper_pearson, lower_bound, conformal_flag_rate
    >>> clopper_pearson(27, 30)              # two-sided 95% interval of 27/30: (0.735, 0.979)
    >>> lower_bound(27, 30)                  # one-sided 95% lower bound: 0.762
    >>> conformal_flag_rate(216, 0.05)       # {"expected", "interval", "k", ...} for 216 films

Clopper-Pearson (1934): the lower bound of k successes in n at one-sided confidence c is the
(1 - c) quantile of Beta(k, n - k + 1) (0 when k = 0), the upper bound the c quantile of
Beta(k + 1, n - k) (1 when k = n); scipy.stats.binomtest(k, n).proportion_ci(method="exact")
gives the same numbers. The split-conformal threshold of n calibration scores at level alpha
is the k-th smallest, k = ceil((n + 1)(1 - alpha)); for a new exchangeable film the chance of
scoring above it is (n + 1 - k) / (n + 1) <= alpha, and the share of all future films above it
(given this calibration set) is Beta(n + 1 - k, k) distributed (Vovk 2012; Angelopoulos and
Bates 2021, section 3.2): that Beta's central interval is the promised flag rate's interval.
"""
from __future__ import annotations

import math

CONFIDENCE = 0.95  # of every interval here


def _check(k: int, n: int) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"{k} successes in {n} trials: need n >= 1 and 0 <= k <= n")


def lower_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson lower confidence bound of the rate k / n."""
    from scipy.stats import beta
    _check(k, n)
    return 0.0 if k == 0 else float(beta.ppf(1 - confidence, k, n - k + 1))


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper confidence bound of the rate k / n."""
    from scipy.stats import beta
    _check(k, n)
    return 1.0 if k == n else float(beta.ppf(confidence, k + 1, n - k))


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval of k / n (each tail (1 - confidence) / 2)."""
    tail = (1 + confidence) / 2
    return lower_bound(k, n, tail), upper_bound(k, n, tail)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)): the rank (1-based, ascending) of the conformal threshold;
    k > n means n scores are too few for that alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"flag rate {alpha}: must be between 0 and 1 (e.g. 0.05)")
    return math.ceil((n + 1) * (1 - alpha) - 1e-9)  # 1e-9: (n+1)(1-alpha) exact in decimal


def conformal_flag_rate(n: int, alpha: float, confidence: float = CONFIDENCE) -> dict:
    """What a conformal threshold of n calibration scores promises at level alpha: the expected
    share of in-distribution films flagged, its central interval (the Beta law of the share
    above a fixed threshold), the rank k and the number of films n."""
    from scipy.stats import beta
    k = conformal_rank(n, alpha)
    if k > n:
        raise ValueError(f"{n} calibration films are too few for a {alpha:.0%} flag rate: a "
                         f"conformal threshold needs at least {math.ceil(1 / alpha) - 1}")
    tail = (1 - confidence) / 2
    law = beta(n + 1 - k, k)
    return {"expected": (n + 1 - k) / (n + 1),
            "interval": [float(law.ppf(tail)), float(law.ppf(1 - tail))],
            "confidence": confidence, "k": k, "n": n}


def flagged_count_interval(n_films: int, n_cal: int, alpha: float,
                           confidence: float = CONFIDENCE) -> list[int]:
    """Central interval of how many of n_films fresh in-distribution films a conformal
    threshold of n_cal scores flags: beta-binomial(n_films, n_cal + 1 - k, k), which adds the
    scored split's own sampling to the threshold's."""
    from scipy.stats import betabinom
    k = conformal_rank(n_cal, alpha)
    law = betabinom(n_films, n_cal + 1 - k, k)
    tail = (1 - confidence) / 2
    return [int(law.ppf(tail)), int(law.ppf(1 - tail))]
