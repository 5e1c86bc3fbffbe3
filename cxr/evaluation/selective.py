"""Selective prediction: how macro AUC changes when the most uncertain images go to a human.

An image's uncertainty is its score under the uncertainty rule in force
(`cxr.uncertainty.image_uncertainty`, the same score that flags it `uncertain` above
`UNCERTAIN_STD`): the mean MC-dropout std over the 14 findings under the report's rule "mean",
the largest under "any". Referring the most uncertain 10/20/30% and scoring the rest shows
whether the uncertainty is useful: if it is, AUC on the kept images rises.

    >>> from cxr.evaluation.selective import selective_macro_auc, referral_rate
    >>> selective_macro_auc(y, p, std, rule="mean")   # {'0.0': {...}, '0.1': {...}, ...}
"""
from __future__ import annotations

import numpy as np

from cxr.evaluation.metrics import macro_auc, per_finding_auc
from cxr.uncertainty import DEFAULT_RULE, UNCERTAIN_STD, image_uncertainty

REFERRAL_FRACTIONS = (0.0, 0.1, 0.2, 0.3)


def selective_macro_auc(y: np.ndarray, p: np.ndarray, uncertainty: np.ndarray,
                        fractions=REFERRAL_FRACTIONS, findings=None,
                        rule: str = DEFAULT_RULE) -> dict:
    """For each fraction f: refer the round(f * N) most uncertain images, score the rest.
    `uncertainty`: per-finding stds (N, C), scored per image under `rule`, or scores (N,).

    Returns {str(f): {'referred_fraction', 'n_kept', 'macro_auc', 'excluded_findings'}}, the
    excluded findings (names, or indices without `findings`) lacking both classes among the
    kept images. Ties in uncertainty go by image order (stable sort): the count is exact."""
    u = np.asarray(uncertainty, dtype=float)
    u = u if u.ndim == 1 else image_uncertainty(u, rule)[0]
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


def referral_rate(std: np.ndarray, threshold: float = UNCERTAIN_STD,
                  rule: str = DEFAULT_RULE) -> float:
    """Fraction of images flagged uncertain under `rule` (score above the threshold)."""
    return float(image_uncertainty(std, rule, threshold)[1].mean())
