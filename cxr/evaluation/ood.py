"""Out-of-distribution score: how far a film's pooled features lie from the TRAINING films'.

    >>> from cxr.evaluation.ood import pooled_features, fit_ood, ood_score
    >>> train_f = pooled_features(model, train_rows)        # (N, C): the input of `classify`
    >>> ood = fit_ood(train_f, val_f, share=0.95)   # LedoitWolf on train; conformal threshold
    >>> score = ood_score(test_f, ood.mean, ood.precision)  # (N,); flagged where > ood.threshold

The score is the class-agnostic Mahalanobis distance (Lee et al. 2018, one Gaussian for all
films rather than one per class, since a film has many labels or none) of the model's pooled
features, `model.pool_features(model.forward_features(x))`, to the mean of the training films'
features, under scikit-learn's `LedoitWolf` shrunk covariance (a plain sample covariance of a
few thousand films in 512-1024 dimensions is singular). Training splits above MAX_TRAIN_FILMS
films are subsampled (seeded) before the fit: the covariance of 20,000 films is as good as that
of 80,000 for this, at a quarter of the feature pass.

The threshold is SPLIT-CONFORMAL (cxr/evaluation/intervals.py): the k-th smallest of n
calibration scores, k = ceil((n + 1) * share), so that a new in-distribution film is flagged
with probability at most 1 - share, and the share of such films flagged has a known Beta law
whose 95% interval the readout states. The calibration scores are the VALIDATION films' (films
neither the covariance nor the network's weights were fitted on) and, to narrow that interval,
the training films' LEAVE-ONE-OUT scores: each training film scored under the LedoitWolf of
the other training films (`leave_one_out_scores`: exact for the fit's shrinkage, one
eigendecomposition for all films). A network may score its own training films closer to
their mean than new films (it fitted them); so the training scores are pooled only when a
two-sample Kolmogorov-Smirnov test does not tell them from the validation scores
(p >= POOL_P_VALUE); otherwise the threshold uses the validation films alone and the readout
says why (`OODModel.calibration["note"]`). With fewer calibration films than 1 / (1 - share)
- 1 no conformal threshold exists: the largest score is used, and the readout says the promise
does not hold (method "max_score").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

DEFAULT_SHARE = 0.95      # share of in-distribution films inside the threshold
MAX_TRAIN_FILMS = 20_000  # cap on the training films the covariance is fitted on
POOL_P_VALUE = 0.05       # KS test: below it the training films' scores are not pooled


@dataclass(frozen=True)
class OODModel:
    mean: np.ndarray       # (C,) training feature mean
    precision: np.ndarray  # (C, C) inverse of the LedoitWolf covariance
    threshold: float       # score above which a film is flagged
    share: float           # share of in-distribution films meant to be at or below it
    shrinkage: float       # LedoitWolf's shrinkage coefficient
    # how the threshold was set (readouts written before the conformal threshold: "quantile",
    # the share quantile of the validation scores, with no promise below)
    method: str = "quantile"
    n_calibration: int | None = None        # scores the threshold was chosen among
    expected_flag_rate: float | None = None  # conformal: (n + 1 - k) / (n + 1) <= 1 - share
    flag_rate_interval: list | None = None   # its 95% interval (intervals.conformal_flag_rate)
    calibration: dict | None = None          # n_val, n_train_pooled, ks_p, pooled, note


@torch.no_grad()
def pooled_features(model, rows: pd.DataFrame, batch_size: int = 32,
                    device: str | torch.device = "cpu") -> np.ndarray:
    """(N, C) float32 pooled features of the table's images, in row order, eval mode (no
    dropout: it lives after pooling). One deterministic backbone pass per image."""
    from cxr.data.dataset import CXRDataset
    from cxr.data.transforms import build_transform

    dataset = CXRDataset(rows, build_transform(model.preprocess, train=False), seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    try:
        parts = [model.pool_features(model.forward_features(x.to(device))).float().cpu().numpy()
                 for x, _ in loader]
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("no images to compute features for")
    return np.concatenate(parts)


def subsample(n: int, cap: int = MAX_TRAIN_FILMS, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `cap` of n items, drawn without replacement (seeded)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def ood_score(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N,) Mahalanobis distance sqrt((f - mean)^T P (f - mean)) of each row of features."""
    d = np.asarray(features, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    sq = np.einsum("nc,cd,nd->n", d, np.asarray(precision, dtype=np.float64), d)
    return np.sqrt(np.maximum(sq, 0.0))


def leave_one_out_scores(train: np.ndarray, shrinkage: float) -> np.ndarray:
    """(N,) each training film's score under the LedoitWolf fitted WITHOUT it (at the full
    fit's shrinkage and trace target, which leaving one of N films out moves by O(1/N)).

    With d = x - mean and S the (1/N) sample covariance, leaving x out gives the mean
    mean - d / (N - 1) and (N - 1) S' = N S - N/(N - 1) d d^T, so the shrunk covariance
    (1 - s) S' + s mu I is A - c d d^T with A = (1 - s) N/(N - 1) S + s mu I and
    c = (1 - s) N / (N - 1)^2; by Sherman-Morrison, with q = d^T A^-1 d, the held-out
    squared distance is (N / (N - 1))^2 q / (1 - c q). One eigendecomposition of S serves
    every film: the cost of one more LedoitWolf fit, not N of them."""
    x = np.asarray(train, dtype=np.float64)
    n, dim = x.shape
    if n < 3:
        raise ValueError(f"leave-one-out scores need at least 3 training films, got {n}")
    d = x - x.mean(axis=0)
    lam, vec = np.linalg.eigh(d.T @ d / n)
    lam = np.maximum(lam, 0.0)
    mu = lam.sum() / dim
    a_eig = (1 - shrinkage) * n / (n - 1) * lam + shrinkage * mu
    q = np.einsum("nc,c->n", (d @ vec) ** 2, 1.0 / np.maximum(a_eig, 1e-300))
    c = (1 - shrinkage) * n / (n - 1) ** 2
    sq = (n / (n - 1)) ** 2 * q / np.maximum(1 - c * q, 1e-12)
    return np.sqrt(sq)


def conformal_threshold(scores: np.ndarray, share: float) -> tuple[float, str, dict | None]:
    """(threshold, method, promise): the k-th smallest score, k = ceil((n + 1) * share), with
    intervals.conformal_flag_rate's promise; the largest score, "max_score" and None when n
    is too small for that share."""
    from cxr.evaluation.intervals import conformal_flag_rate, conformal_rank

    scores = np.sort(np.asarray(scores, dtype=np.float64))
    k = conformal_rank(len(scores), 1 - share)
    if k > len(scores):
        return float(scores[-1]), "max_score", None
    return float(scores[k - 1]), "conformal", conformal_flag_rate(len(scores), 1 - share)


def calibration_scores(train: np.ndarray, val_scores: np.ndarray, shrinkage: float,
                       pool_train: bool = True) -> tuple[np.ndarray, dict]:
    """The scores the threshold is chosen among (validation, plus the training films'
    leave-one-out scores when the KS test cannot tell them apart) and a record of the choice."""
    from scipy.stats import ks_2samp

    info = {"n_val": int(len(val_scores)), "n_train_pooled": 0, "ks_p": None, "pooled": False,
            "note": "validation films only (training scores not asked for)"}
    if not pool_train:
        return val_scores, info
    if len(train) < 3:
        info["note"] = f"validation films only: {len(train)} training films are too few"
        return val_scores, info
    held_out = leave_one_out_scores(train, shrinkage)
    p = float(ks_2samp(held_out, val_scores).pvalue)
    info.update(ks_p=p, train_median=float(np.median(held_out)),
                val_median=float(np.median(val_scores)))
    if p < POOL_P_VALUE:
        info["note"] = (f"validation films only: the training films' leave-one-out scores "
                        f"(median {info['train_median']:.2f}) differ from the validation films' "
                        f"(median {info['val_median']:.2f}; KS p = {p:.3g} < {POOL_P_VALUE})")
        return val_scores, info
    info.update(pooled=True, n_train_pooled=int(len(held_out)),
                note=f"validation films and {len(held_out)} training films' leave-one-out "
                     f"scores (KS p = {p:.3g} >= {POOL_P_VALUE}: not told apart)")
    return np.concatenate([val_scores, held_out]), info


def fit_ood(train_features: np.ndarray, val_features: np.ndarray,
            share: float = DEFAULT_SHARE, pool_train: bool = True) -> OODModel:
    """LedoitWolf on the TRAINING features; the conformal threshold at `share` of the
    calibration scores (`calibration_scores`: validation, and the training films' leave-one-out
    scores when they look alike; this module's docstring)."""
    from sklearn.covariance import LedoitWolf

    if not 0 < share < 1:
        raise ValueError(f"--ood-share {share}: must be between 0 and 1 (e.g. 0.95)")
    train = np.asarray(train_features, dtype=np.float64)
    if len(train) < 2 or len(val_features) < 1:
        raise ValueError(f"the OOD fit needs at least 2 training and 1 validation film, got "
                         f"{len(train)} and {len(val_features)}")
    lw = LedoitWolf().fit(train)
    val_scores = ood_score(val_features, lw.location_, lw.precision_)
    scores, info = calibration_scores(train, val_scores, lw.shrinkage_, pool_train)
    threshold, method, promise = conformal_threshold(scores, share)
    if promise is None:
        info["note"] += (f"; {len(scores)} calibration films are too few for a conformal "
                         f"threshold at {share:.0%}: the largest score is used, no promise")
    return OODModel(lw.location_, lw.precision_, threshold, float(share), float(lw.shrinkage_),
                    method, int(len(scores)), promise and promise["expected"],
                    promise and promise["interval"], info)
