"""Out-of-distribution score: how far a film's pooled features lie from the TRAINING films'.

    >>> from cxr.evaluation.ood import pooled_features, fit_ood, ood_score
    >>> train_f = pooled_features(model, train_rows)        # (N, C): the input of `classify`
    >>> ood = fit_ood(train_f, val_f, share=0.95)           # LedoitWolf on train, threshold on val
    >>> score = ood_score(test_f, ood.mean, ood.precision)  # (N,); flagged where > ood.threshold

The score is the class-agnostic Mahalanobis distance (Lee et al. 2018, one Gaussian for all
films rather than one per class, since a film has many labels or none) of the model's pooled
features, `model.pool_features(model.forward_features(x))`, to the mean of the training films'
features, under scikit-learn's `LedoitWolf` shrunk covariance (a plain sample covariance of a
few thousand films in 512-1024 dimensions is singular). The threshold is chosen so that a stated
share (default 95%) of VALIDATION films score at or below it: about 1 - share of in-distribution
films are flagged by design. Training splits above MAX_TRAIN_FILMS films are subsampled (seeded)
before the fit: the covariance of 20,000 films is as good as that of 80,000 for this, at a
quarter of the feature pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

DEFAULT_SHARE = 0.95      # share of validation films inside the threshold
MAX_TRAIN_FILMS = 20_000  # cap on the training films the covariance is fitted on


@dataclass(frozen=True)
class OODModel:
    mean: np.ndarray       # (C,) training feature mean
    precision: np.ndarray  # (C, C) inverse of the LedoitWolf covariance
    threshold: float       # score above which a film is flagged
    share: float           # share of validation films at or below the threshold
    shrinkage: float       # LedoitWolf's shrinkage coefficient


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


def fit_ood(train_features: np.ndarray, val_features: np.ndarray,
            share: float = DEFAULT_SHARE) -> OODModel:
    """LedoitWolf on the TRAINING features; the threshold is the `share` quantile of the
    VALIDATION films' scores (films the covariance never saw, as new films will be)."""
    from sklearn.covariance import LedoitWolf

    if not 0 < share < 1:
        raise ValueError(f"--ood-share {share}: must be between 0 and 1 (e.g. 0.95)")
    train = np.asarray(train_features, dtype=np.float64)
    if len(train) < 2 or len(val_features) < 1:
        raise ValueError(f"the OOD fit needs at least 2 training and 1 validation film, got "
                         f"{len(train)} and {len(val_features)}")
    lw = LedoitWolf().fit(train)
    scores = ood_score(val_features, lw.location_, lw.precision_)
    return OODModel(lw.location_, lw.precision_, float(np.quantile(scores, share)), float(share),
                    float(lw.shrinkage_))
