"""Per-finding metrics on arrays: AUC, AP, ECE, Brier, Youden threshold, ROC and calibration tables.

Pure numpy / scikit-learn. Inputs are `y` (N, F) 0/1 labels and `p` (N, F) probabilities in
[0, 1], columns in `cxr.labels.FINDINGS` order. A finding whose column has only one class has
no AUC (NaN): it is left out of the macro AUC and listed as excluded, never silently scored 0.5.

    >>> from cxr.evaluation.metrics import per_finding_auc, macro_auc
    >>> aucs = per_finding_auc(y, p); macro, included = macro_auc(aucs)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

ECE_BINS = 15


def _has_both_classes(col: np.ndarray) -> bool:
    return 0 < int(col.sum()) < len(col)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of one finding, exactly `sklearn.metrics.roc_auc_score`; NaN with one class."""
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if _has_both_classes(y) else float("nan")


def per_finding_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(F,) AUC per column; NaN where the column lacks positives or negatives."""
    return np.array([auc(y[:, k], p[:, k]) for k in range(y.shape[1])])


def macro_auc(aucs: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean AUC over findings that have one (both classes present); returns (macro, included)."""
    included = ~np.isnan(aucs)
    return (float(aucs[included].mean()) if included.any() else float("nan")), included


def micro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC over all (image, finding) pairs pooled: sklearn's average='micro'."""
    y = np.asarray(y).ravel()
    return float(roc_auc_score(y, np.asarray(p).ravel())) if _has_both_classes(y) else float("nan")


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """sklearn average_precision_score of one finding; NaN without positives."""
    return float(average_precision_score(y, p)) if np.asarray(y).sum() > 0 else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability; equals sklearn brier_score_loss, but also defined
    when the column has one class (sklearn then refuses to infer the positive label)."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Non-empty bins of one finding: bin, mean_predicted, observed_frequency, count."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)  # equal-width; p == 1.0: the last bin
    count = np.bincount(b, minlength=n_bins)
    keep = count > 0
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y, minlength=n_bins)
    return pd.DataFrame({"bin": np.arange(n_bins)[keep],
                         "mean_predicted": sum_p[keep] / count[keep],
                         "observed_frequency": sum_y[keep] / count[keep],
                         "count": count[keep]})


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over bins of (n_bin / N) * |mean p - observed rate|."""
    t = calibration_bins(y, p, n_bins)
    gap = (t["mean_predicted"] - t["observed_frequency"]).abs()
    return float((t["count"] * gap).sum() / t["count"].sum())


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (choose it on VALIDATION data).

    NaN when the column has one class. Ties go to the highest threshold (fewest positives)."""
    if not _has_both_classes(np.asarray(y)):
        return float("nan")
    fpr, tpr, thr = roc_curve(y, p)
    j = tpr - fpr
    j[~np.isfinite(thr)] = -np.inf  # sklearn's first point (threshold inf) flags nothing
    return float(thr[int(np.argmax(j))])


def sens_spec(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity when p >= threshold is called positive (NaN if undefined)."""
    y = np.asarray(y).astype(bool)
    if not np.isfinite(threshold):
        return float("nan"), float("nan")
    pred = np.asarray(p) >= threshold
    sens = (pred & y).sum() / y.sum() if y.any() else float("nan")
    spec = (~pred & ~y).sum() / (~y).sum() if (~y).any() else float("nan")
    return float(sens), float(spec)


def roc_table(y: np.ndarray, p: np.ndarray, findings) -> pd.DataFrame:
    """Long table finding, fpr, tpr, threshold (sklearn roc_curve) for findings with an AUC."""
    parts = []
    for k, name in enumerate(findings):
        if _has_both_classes(y[:, k]):
            fpr, tpr, thr = roc_curve(y[:, k], p[:, k])
            parts.append(pd.DataFrame({"finding": name, "fpr": fpr, "tpr": tpr, "threshold": thr}))
    cols = ["finding", "fpr", "tpr", "threshold"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def calibration_table(y: np.ndarray, p: np.ndarray, findings,
                      n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Long table finding, bin, mean_predicted, observed_frequency, count (non-empty bins)."""
    parts = [calibration_bins(y[:, k], p[:, k], n_bins).assign(finding=name)
             for k, name in enumerate(findings)]
    cols = ["finding", "bin", "mean_predicted", "observed_frequency", "count"]
    return pd.concat(parts, ignore_index=True)[cols]
