"""cxr/evaluation/intervals.py: the conformal threshold's promised flag rate and its interval
match what happens over many calibration sets; too few films are refused with the number."""
from __future__ import annotations

import numpy as np
import pytest

from cxr.evaluation.intervals import conformal_flag_rate, conformal_rank, flagged_count_interval


def test_the_promised_interval_covers_the_true_flag_rate_95_percent_of_the_time():
    """Uniform scores: a threshold at the k-th smallest of n flags exactly 1 - U(k) of new
    films, so 4,000 calibration sets give the law the promise describes."""
    n, alpha = 216, 0.05
    promise = conformal_flag_rate(n, alpha)
    assert promise["k"] == conformal_rank(n, alpha) == 207  # ceil(217 * 0.95)
    assert promise["expected"] == pytest.approx(10 / 217)
    rng = np.random.default_rng(0)
    true = 1 - np.sort(rng.random((4000, n)), axis=1)[:, promise["k"] - 1]
    lo, hi = promise["interval"]
    assert true.mean() == pytest.approx(promise["expected"], abs=0.002)
    assert ((true >= lo) & (true <= hi)).mean() == pytest.approx(0.95, abs=0.01)
    # and the count flagged among 216 test films falls in its beta-binomial range as often
    low, high = flagged_count_interval(216, n, alpha)
    counts = rng.binomial(216, true)
    assert ((counts >= low) & (counts <= high)).mean() >= 0.94


def test_too_few_calibration_films_are_refused_with_the_number_needed():
    assert conformal_rank(19, 0.05) == 19
    conformal_flag_rate(19, 0.05)
    with pytest.raises(ValueError, match="18 calibration films are too few .* at least 19"):
        conformal_flag_rate(18, 0.05)
    with pytest.raises(ValueError, match="flag rate 1.5"):
        conformal_rank(10, 1.5)
