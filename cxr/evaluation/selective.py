"""Selective prediction: how macro AUC changes when the most uncertain images go to a human.

An image's uncertainty is its largest MC-dropout std over the 14 findings (the same rule that
flags it `uncertain` when that std exceeds `cxr.uncertainty.UNCERTAIN_STD`). Referring the most
uncertain 10/20/30% and scoring the rest shows whether the uncertainty is useful: if it is, AUC
on the kept images rises.

    >>> from cxr.evaluation.selective import selective_macro_auc, referral_rate
    >>> selective_macro_auc(y, p, std)   # {'0.0': {...}, '0.1': {...}, ...}
"""
from __future__ import annotations

import numpy as np

from cxr.evaluation.metrics import macro_auc, per_finding_auc
from cxr.uncertainty import UNCERTAIN_STD

REFERRAL_FRACTIONS = (0.0, 0.1, 0.2, 0.3)


def image_uncertainty(std: np.ndarray) -> np.ndarray:
    """(N,) per-image uncertainty: the max std over findings (a 1-D input is used as is)."""
    std = np.asarray(std, dtype=float)
    return std if std.ndim == 1 else std.max(axis=1)


def selective_macro_auc(y: np.ndarray, p: np.ndarray, uncertainty: np.ndarray,
                        fractions=REFERRAL_FRACTIONS, findings=None) -> dict:
    """For each fraction f: refer the round(f * N) most uncertain images, score the rest.

    Returns {str(f): {'referred_fraction', 'n_kept', 'macro_auc', 'excluded_findings'}}, the
    excluded findings (names, or indices without `findings`) lacking both classes among the
    kept images. Ties in uncertainty go by image order (stable sort): the count is exact."""
    u = image_uncertainty(uncertainty)
    order = np.argsort(-u, kind="stable")  # most uncertain first
    out = {}
    for f in fractions:
        n_ref = int(round(f * len(u)))
        keep = np.sort(order[n_ref:])
        macro, included = macro_auc(per_finding_auc(y[keep], p[keep]))
        out[str(f)] = {"referred_fraction": n_ref / len(u), "n_kept": int(len(keep)),
                       "macro_auc": macro,
                       "excluded_findings": [findings[k] if findings else int(k)
                                             for k in np.flatnonzero(~included)]}
    return out


def referral_rate(std: np.ndarray, threshold: float = UNCERTAIN_STD) -> float:
    """Fraction of images with any finding's std above the threshold (flagged uncertain)."""
    return float((image_uncertainty(std) > threshold).mean())
