"""Operating points per finding, chosen on VALIDATION only, and how they fare on a scored split.

    >>> from cxr.evaluation.operating_points import choose_points, point_metrics
    >>> points = choose_points(y_val, p_val)          # {"youden": {...}, "sensitivity": ..., ...}
    >>> table = point_metrics(y_test, p_test, patients, points, n_bootstrap=1000, seed=0)

Three points per finding, each a threshold t with "p >= t" called positive (the convention of
`cxr.evaluation.metrics.sens_spec`), all taken from the validation ROC (scikit-learn's
`roc_curve`, every distinct score a candidate):
- `youden`: maximum sensitivity + specificity - 1 (`metrics.youden_threshold`);
- `sensitivity`: the HIGHEST threshold at which the one-sided 95% Clopper-Pearson LOWER
  BOUND of the validation sensitivity (cxr/evaluation/intervals.py) is >= TARGET (0.90): as
  few false positives as a sensitivity that holds with 95% confidence allows. The point
  estimate alone meeting 0.90 would miss the target on new films about half the time;
- `specificity`: the LOWEST threshold whose validation specificity's lower bound is >= TARGET:
  as many true positives as that allows.
The bound of k successes in n can reach 0.90 only when n >= 29 (0.05^(1/n) >= 0.9). Where no
threshold reaches it (too few validation positives, or negatives), the point falls back to
the MOST sensitive threshold (every validation positive called: the lowest positive score) or
the most specific (just above the highest negative score), and says so: `target_met` false
and a `note`. Each point keeps its validation sensitivity and specificity, their two-sided
95% Clopper-Pearson intervals (`val_sensitivity_ci`, `val_specificity_ci`), their one-sided
lower bounds (`val_sensitivity_lcb`, `val_specificity_lcb`) and the counts they come from
(`n_val_positive`, `n_val_negative`). A finding whose validation split lacks positives or
negatives has no points (NaN). The probabilities passed in should be the
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
CONFIDENCE = 0.95  # ... as a one-sided lower confidence bound (Clopper-Pearson)
POINTS = ("youden", "sensitivity", "specificity")
RATES = ("sensitivity", "specificity", "ppv", "npv")


def _lower_bounds(k: np.ndarray, n: int, confidence: float) -> np.ndarray:
    """Vectorised intervals.lower_bound: the (1 - confidence) quantile of Beta(k, n - k + 1)."""
    from scipy.stats import beta
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lcb = beta.ppf(1 - confidence, np.maximum(k, 1), n - k + 1)
    return np.where(k > 0, lcb, 0.0)


def _targeted(y: np.ndarray, p: np.ndarray, point: str, target: float,
              confidence: float) -> tuple[float, bool]:
    """(threshold, target_met) by the lower-bound rule of this module's docstring."""
    from sklearn.metrics import roc_curve
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)  # thresholds descending
    finite = np.isfinite(thr)
    if point == "sensitivity":  # tp rises as t falls: the first t whose bound reaches target
        ok = np.flatnonzero(finite & (_lower_bounds(np.rint(tpr * n_pos), n_pos, confidence)
                                      >= target))
        if ok.size:
            return float(thr[ok[0]]), True
        return float(np.min(np.asarray(p)[y])), False  # every positive called
    tn = np.rint((1 - fpr) * n_neg)  # specificity falls as t falls: the last t that keeps it
    ok = np.flatnonzero(finite & (_lower_bounds(tn, n_neg, confidence) >= target))
    if ok.size:
        return float(thr[ok[-1]]), True
    negatives = np.asarray(p)[~y]
    met = bool(_lower_bounds(n_neg, n_neg, confidence) >= target)  # all negatives below t
    return float(np.nextafter(np.max(negatives), np.inf)), met


def choose_threshold(y: np.ndarray, p: np.ndarray, point: str, target: float = TARGET,
                     confidence: float = CONFIDENCE) -> tuple[float, bool | None]:
    """One finding's (threshold, target_met) at `point` (POINTS): target_met is None for
    youden, False where the fallback was taken; (NaN, None) when y has one class."""
    from cxr.evaluation.metrics import youden_threshold
    if point not in POINTS:
        raise ValueError(f"operating point {point!r}: expected one of {', '.join(POINTS)}")
    if not 0 < int(np.sum(y)) < len(y):
        return float("nan"), None
    if point == "youden":
        return youden_threshold(y, p), None
    return _targeted(y, p, point, target, confidence)


def threshold_for(y: np.ndarray, p: np.ndarray, point: str, target: float = TARGET,
                  confidence: float = CONFIDENCE) -> float:
    """One finding's threshold at `point` (POINTS); NaN when y has one class."""
    return choose_threshold(y, p, point, target, confidence)[0]


def _validation_rates(y: np.ndarray, p: np.ndarray, t: float, confidence: float) -> dict:
    """Validation sensitivity and specificity at t with their intervals and counts."""
    from cxr.evaluation.intervals import clopper_pearson, lower_bound
    from cxr.evaluation.metrics import sens_spec
    sens, spec = sens_spec(y, p, t)
    row = {"val_sensitivity": sens, "val_specificity": spec}
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    row.update(n_val_positive=n_pos, n_val_negative=n_neg)
    if not np.isfinite(t):
        return row
    called = np.asarray(p) >= t
    for name, k, n in (("sensitivity", int((called & y).sum()), n_pos),
                       ("specificity", int((~called & ~y).sum()), n_neg)):
        row[f"val_{name}_ci"] = list(clopper_pearson(k, n))
        row[f"val_{name}_lcb"] = lower_bound(k, n, confidence)
    return row


def _note(point: str, target: float, confidence: float, n: int) -> str:
    who = "positives" if point == "sensitivity" else "negatives"
    need = int(np.ceil(np.log(1 - confidence) / np.log(target)))
    return (f"target not met with {confidence:.0%} confidence: {n} validation {who} cannot put "
            f"the lower bound of {point} at {target:.2f} (needs >= {need} and few misses); "
            f"the most {'sensitive' if point == 'sensitivity' else 'specific'} threshold is "
            "used instead")


def choose_points(y_val: np.ndarray, p_val: np.ndarray, findings,
                  target: float = TARGET, confidence: float = CONFIDENCE) -> dict:
    """{point: {finding: {threshold, val_sensitivity, val_specificity, their _ci and _lcb,
    n_val_positive, n_val_negative[, target_met, lcb_confidence, note]}}} from VALIDATION
    labels (N, F) and (calibrated) probabilities (N, F); NaN where a finding has one class."""
    out = {}
    for point in POINTS:
        out[point] = {}
        for k, name in enumerate(findings):
            t, met = choose_threshold(y_val[:, k], p_val[:, k], point, target, confidence)
            row = {"threshold": t, **_validation_rates(y_val[:, k], p_val[:, k], t, confidence)}
            if point != "youden" and met is not None:
                row.update(target_met=met, lcb_confidence=confidence)
                if not met:
                    n = row["n_val_positive" if point == "sensitivity" else "n_val_negative"]
                    row["note"] = _note(point, target, confidence, n)
            out[point][name] = row
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
    """{point: {finding: {threshold, val_sensitivity, val_specificity (and what else the
    readout's point holds: intervals, target_met), sensitivity,
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
            row = dict(points[point][name])  # threshold, val_ rates (and their intervals)
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
