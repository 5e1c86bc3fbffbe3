"""Patient-level bootstrap: 95% CIs for per-finding and macro AUC, and paired model differences.

Why by patient: ChestX-ray14 patients have up to 184 images, and images of one patient are
correlated; resampling images pretends they are independent and gives CIs that are too narrow.
Each resample draws PATIENTS with replacement (seeded `np.random.default_rng(seed)`) and takes
all of their images, so an image's weight is how many times its patient was drawn.

Vectorised: the AUC of every resample comes from one sort per finding. Images are grouped by
tied score; per resample, positive and negative weights per tie group are a sparse
(patients x groups) product with the resample's patient counts; AUC is then the Mann-Whitney
sum with ties counted one half, which is exactly sklearn's roc_auc_score with these weights.

    >>> from cxr.evaluation.bootstrap import auc_confidence_intervals
    >>> cis = auc_confidence_intervals(y, p, patients, n_resamples=1000, seed=0)
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

from cxr.evaluation.metrics import macro_auc, per_finding_auc

DEFAULT_RESAMPLES = 1000
CHUNK = 200  # resamples per batch: bounds memory at CHUNK x (patients + tie groups) floats


def resample_counts(patients: np.ndarray, n_resamples: int, seed: int,
                    chunk: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (counts (b, P), codes (N,)): how often each patient is drawn, per resample.

    `codes[i]` is image i's patient index into the counts columns (patients sorted), so the
    same patients and seed give the same resamples whatever order the images come in."""
    _, codes = np.unique(np.asarray(patients), return_inverse=True)
    n_pat = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_pat, size=(b, n_pat))
        flat = (draws + np.arange(b)[:, None] * n_pat).ravel()
        yield np.bincount(flat, minlength=b * n_pat).reshape(b, n_pat).astype(float), codes


def weighted_auc(y: np.ndarray, score: np.ndarray, codes: np.ndarray,
                 counts: np.ndarray) -> np.ndarray:
    """(b,) AUC of one finding under each resample's patient counts; NaN without both classes."""
    order = np.argsort(score, kind="mergesort")
    s, yy, cc = score[order], np.asarray(y)[order].astype(float), codes[order]
    group = np.concatenate([[0], np.cumsum(np.diff(s) != 0)])  # tie group of each image
    shape = (counts.shape[1], int(group[-1]) + 1 if len(group) else 0)
    pos_m = sparse.csr_matrix((yy, (cc, group)), shape=shape)
    neg_m = sparse.csr_matrix((1.0 - yy, (cc, group)), shape=shape)
    pos = np.asarray(pos_m.T @ counts.T).T  # (b, groups): positive weight per tie group
    neg = np.asarray(neg_m.T @ counts.T).T
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _chunk_aucs(y: np.ndarray, p: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.stack([weighted_auc(y[:, k], p[:, k], codes, counts)
                     for k in range(y.shape[1])], axis=1)


def bootstrap_aucs(y: np.ndarray, p: np.ndarray, patients: np.ndarray,
                   n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples, F) per-finding AUC under patient resampling (NaN where undefined)."""
    return np.concatenate([_chunk_aucs(y, p, codes, counts)
                           for counts, codes in resample_counts(patients, n_resamples, seed)])


def macro_of(boot: np.ndarray, included: np.ndarray) -> np.ndarray:
    """Per-resample macro AUC over the included findings (those a resample lacks are skipped)."""
    sub = boot[:, included]
    valid = ~np.isnan(sub)
    with np.errstate(invalid="ignore"):
        return np.where(valid.any(axis=1), np.nansum(sub, axis=1) / valid.sum(axis=1), np.nan)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> list[float] | None:
    """[low, high] percentile interval of the finite samples; None when there are none."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def auc_confidence_intervals(y: np.ndarray, p: np.ndarray, patients: np.ndarray,
                             included: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
                             seed: int = 0) -> dict:
    """{'per_finding': [ci or None] * F, 'macro': ci, 'n_resamples', 'seed', 'unit'}."""
    boot = bootstrap_aucs(y, p, patients, n_resamples, seed)
    return {"per_finding": [percentile_ci(boot[:, k]) for k in range(boot.shape[1])],
            "macro": percentile_ci(macro_of(boot, included)),
            "n_resamples": n_resamples, "seed": seed, "unit": "patient"}


def paired_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, patients: np.ndarray,
                      included: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> dict:
    """Macro AUC of A minus B with the SAME patient resamples for both models.

    Returns difference (on the full data), 95% percentile CI and a two-sided bootstrap p-value
    p = min(1, 2 * (1 + #{resamples on the far side of 0}) / (B + 1)); the +1 keeps p above
    zero, since B resamples cannot show p below about 1/B."""
    inc = np.asarray(included, dtype=bool)
    y, p_a, p_b = y[:, inc], p_a[:, inc], p_b[:, inc]
    every = np.ones(int(inc.sum()), dtype=bool)
    diffs = [macro_of(_chunk_aucs(y, p_a, codes, counts), every)
             - macro_of(_chunk_aucs(y, p_b, codes, counts), every)
             for counts, codes in resample_counts(patients, n_resamples, seed)]
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    full = macro_auc(per_finding_auc(y, p_a))[0] - macro_auc(per_finding_auc(y, p_b))[0]
    far = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return {"difference": float(full), "ci": percentile_ci(d),
            "p_value": float(min(1.0, 2 * (1 + far) / (len(d) + 1))),
            "n_resamples": n_resamples, "seed": seed, "unit": "patient"}
