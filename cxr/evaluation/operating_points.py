"""Operating points per finding, chosen on VALIDATION only, and how they fare on a scored split.

    >>> from cxr.evaluation.operating_points import choose_points, point_metrics
    >>> points = choose_points(y_val, p_val)          # {"youden": {...}, "sensitivity": ..., ...}
    >>> table = point_metrics(y_test, p_test, patients, points, n_bootstrap=1000, seed=0)

Three points per finding, each a threshold t with "p >= t" called positive (the convention of
`cxr.evaluation.metrics.sens_spec`), all taken from the validation ROC (scikit-learn's
`roc_curve`, every distinct score a candidate):
- `youden`: maximum sensitivity + specificity - 1 (`metrics.youden_threshold`);
- `sensitivity`: the HIGHEST threshold whose validation sensitivity is >= TARGET (0.90): as
  few false positives as that sensitivity allows;
- `specificity`: the LOWEST threshold whose validation specificity is >= TARGET: as many true
  positives as that specificity allows. When even the top score would break the target (many
  negatives tied there), t sits just above it and nothing is called positive.
Each point keeps its validation sensitivity and specificity. A finding whose validation split
lacks positives or negatives has no points (NaN). The probabilities passed in should be the
calibrated ones a reader sees (cxr.readout); calibration is monotone per finding, so the calls
are the same either way.

`point_metrics` reports sensitivity, specificity, PPV and NPV at each point on another split
with 95% CIs from the patient bootstrap of cxr/evaluation/bootstrap.py (the same resamples for
every finding and point).
"""
from __future__ import annotations

import numpy as np

# scikit-learn, metrics and bootstrap are imported inside the functions that fit or score:
# predicting (cxr.readout via cxr.predict) needs only POINTS and thresholds(), and the
# dashboard's Predict page should not pay for importing them.
TARGET = 0.90  # the validation sensitivity / specificity the two targeted points must reach
POINTS = ("youden", "sensitivity", "specificity")
RATES = ("sensitivity", "specificity", "ppv", "npv")


def _targeted(y: np.ndarray, p: np.ndarray, point: str, target: float) -> float:
    from sklearn.metrics import roc_curve
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)  # thresholds descending
    finite = np.isfinite(thr)
    if point == "sensitivity":  # tpr rises as t falls: the first t that reaches the target
        return float(thr[np.flatnonzero(finite & (tpr >= target))[0]])
    ok = np.flatnonzero(finite & (1 - fpr >= target))
    if ok.size:  # specificity falls as t falls: the last t that keeps the target
        return float(thr[ok[-1]])
    return float(np.nextafter(np.max(p), np.inf))  # even the top score breaks it: call none


def threshold_for(y: np.ndarray, p: np.ndarray, point: str, target: float = TARGET) -> float:
    """One finding's threshold at `point` (POINTS); NaN when y has one class."""
    from cxr.evaluation.metrics import youden_threshold
    if point not in POINTS:
        raise ValueError(f"operating point {point!r}: expected one of {', '.join(POINTS)}")
    if not 0 < int(np.sum(y)) < len(y):
        return float("nan")
    return youden_threshold(y, p) if point == "youden" else _targeted(y, p, point, target)


def choose_points(y_val: np.ndarray, p_val: np.ndarray, findings,
                  target: float = TARGET) -> dict:
    """{point: {finding: {threshold, val_sensitivity, val_specificity}}} from VALIDATION labels
    (N, F) and (calibrated) probabilities (N, F); NaN where a finding has one class."""
    from cxr.evaluation.metrics import sens_spec
    out = {}
    for point in POINTS:
        out[point] = {}
        for k, name in enumerate(findings):
            t = threshold_for(y_val[:, k], p_val[:, k], point, target)
            sens, spec = sens_spec(y_val[:, k], p_val[:, k], t)
            out[point][name] = {"threshold": t, "val_sensitivity": sens, "val_specificity": spec}
    return out


def thresholds(points: dict, point: str, findings) -> np.ndarray:
    """(F,) thresholds of one point in `findings` order (NaN where there is none)."""
    return np.array([np.nan if points[point][f]["threshold"] is None
                     else float(points[point][f]["threshold"]) for f in findings])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)  # never divides by 0


def _rates(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn)}


def _confusion_columns(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, F, 4) indicators of tp, fp, tn, fn per image and finding (all 0 where t is NaN)."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(p) >= t  # NaN thresholds compare False: masked below
    cols = np.stack([called & y, called & ~y, ~called & ~y, ~called & y], axis=-1)
    return (cols & np.isfinite(t)[None, :, None]).astype(np.float64)


def point_metrics(y: np.ndarray, p: np.ndarray, patients: np.ndarray, points: dict, findings,
                  n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """{point: {finding: {threshold, val_sensitivity, val_specificity, sensitivity,
    specificity, ppv, npv, <rate>_ci [lo, hi] or None, n_called_positive}}} on the scored split
    (labels y, calibrated probabilities p, patient ids for the bootstrap)."""
    from cxr.evaluation.bootstrap import percentile_ci
    out = {}
    for point in POINTS:
        t = thresholds(points, point, findings)
        cols = _confusion_columns(y, p, t)  # (N, F, 4)
        full = _rates(*np.moveaxis(cols.sum(axis=0), -1, 0))  # each (F,)
        boot = _bootstrap_rates(cols, patients, n_bootstrap, seed) if n_bootstrap > 0 else None
        out[point] = {}
        for k, name in enumerate(findings):
            row = {key: points[point][name][key]
                   for key in ("threshold", "val_sensitivity", "val_specificity")}
            for rate in RATES:
                row[rate] = float(full[rate][k]) if np.isfinite(t[k]) else float("nan")
                row[f"{rate}_ci"] = (percentile_ci(boot[rate][:, k])
                                     if boot is not None and np.isfinite(t[k]) else None)
            row["n_called_positive"] = int(cols[:, k, 0].sum() + cols[:, k, 1].sum())
            out[point][name] = row
    return out


def _bootstrap_rates(cols: np.ndarray, patients: np.ndarray, n_resamples: int,
                     seed: int) -> dict[str, np.ndarray]:
    """Each rate under every patient resample: {rate: (n_resamples, F)}. An image's weight is
    how often its patient was drawn, so the counts are one matrix product per chunk."""
    from cxr.evaluation.bootstrap import resample_counts
    flat = cols.reshape(len(cols), -1)  # (N, F * 4)
    parts = [counts[:, codes] @ flat  # (b, F * 4): weighted tp, fp, tn, fn
             for counts, codes in resample_counts(patients, n_resamples, seed)]
    sums = np.concatenate(parts).reshape(n_resamples, cols.shape[1], 4)
    return _rates(*np.moveaxis(sums, -1, 0))
