"""Queue orders of the review worklist: which case a reviewer sees first, and why.

    >>> from cxr.triage_order import order_cases
    >>> cases = Worklist(db).cases(checkpoint_hash=h)             # one model's queue
    >>> order_cases(cases, "urgent", urgent=("Pneumothorax",))    # + `group` and `reason`
    >>> order_cases(cases, "likely-negative", sensitivity_thresholds=readout.thresholds(
    ...     "sensitivity"))                                         # the cases that qualify

The orders (`cxr worklist cases --order ...`, the Triage page):
- `urgent`: four groups, each sorted by its own score, highest first:
    1. a positive call for an urgent finding (default Pneumothorax): by the highest calibrated
       probability among the urgent findings called positive;
    2. out of distribution or uncertain (flagged under the case's uncertainty rule): by the
       uncertainty score, then the OOD score;
    3. any other positive call: by the highest calibrated probability among the findings
       called positive;
    4. the rest: by the uncertainty score.
  Calls are the ones imported with the case (its readout's operating point).
- `uncertain`: by the uncertainty score (the report's order, the page's default sort).
- `likely-negative`: only the cases with no positive call at the HIGH-SENSITIVITY operating
  point (calibrated probability >= that point's threshold counts as a call), not flagged
  uncertain and in distribution; the clearest first: by the largest margin
  max_f(calibrated_f - threshold_f) ascending. Findings without a threshold at that point
  (their validation split had one class) are not checked, and none at all is an error. A list
  to check quickly, never "normal": the high-sensitivity point still misses about 1 in 10
  positives on validation.
Ties: a missing score sorts last, then the lower case id (the earlier import) comes first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxr.labels import FINDINGS, finding_index

ORDERS = ("urgent", "uncertain", "likely-negative")
DEFAULT_URGENT = ("Pneumothorax",)
CAL = [f"cal_{f}" for f in FINDINGS]
CALL = [f"call_{f}" for f in FINDINGS]
URGENT_GROUPS = ("urgent positive call", "out of distribution / uncertain",
                 "other positive call", "rest")


def order_cases(cases: pd.DataFrame, order: str, urgent=DEFAULT_URGENT,
                sensitivity_thresholds=None) -> pd.DataFrame:
    """The cases (Worklist.cases()) in queue order with a `reason` column (and `group`, 1-4,
    for `urgent`). `sensitivity_thresholds`: (14,) thresholds of the high-sensitivity point on
    the calibrated scale, needed by `likely-negative` unless the cases' calls were made there."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: expected one of {', '.join(ORDERS)}")
    urgent = tuple(FINDINGS[finding_index(f)] for f in urgent)  # unknown names: an error
    cases = cases.reset_index(drop=True)
    if order == "uncertain":
        out = _sorted(cases, [_num(cases, "uncertainty")])
        out["reason"] = [_uncertainty_text(r) for _, r in out.iterrows()]
        return out
    if order == "urgent":
        return _urgent(cases, urgent)
    return _likely_negative(cases, sensitivity_thresholds)


def _num(cases: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(cases[column], errors="coerce").to_numpy(dtype=float)


def _sorted(cases: pd.DataFrame, keys: list[np.ndarray], group: np.ndarray | None = None):
    """Rows by group (ascending), then each key descending with NaN last, then id."""
    cols = {"_g": group if group is not None else np.zeros(len(cases)), "_id": cases["id"]}
    by, asc = ["_g"], [True]
    for i, key in enumerate(keys):
        cols[f"_n{i}"], cols[f"_k{i}"] = np.isnan(key), -np.nan_to_num(key, nan=0.0)
        by += [f"_n{i}", f"_k{i}"]
        asc += [True, True]
    frame = pd.DataFrame(cols)
    idx = frame.sort_values(by + ["_id"], ascending=asc + [True], kind="mergesort").index
    return cases.loc[idx].reset_index(drop=True)


def _calibrated(cases: pd.DataFrame) -> np.ndarray:
    """(N, 14) calibrated probabilities, the MC mean where a case has none."""
    cal = cases[CAL].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    prob = cases[[f"prob_{f}" for f in FINDINGS]].to_numpy(dtype=float)
    return np.where(np.isnan(cal), prob, cal)


def _flag(cases: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(cases[column], errors="coerce").fillna(0).to_numpy() == 1


def _urgent(cases: pd.DataFrame, urgent: tuple[str, ...]) -> pd.DataFrame:
    positive = cases[CALL].to_numpy() == "positive"
    cal = _calibrated(cases)
    is_urgent = np.isin(np.asarray(FINDINGS), urgent)
    urgent_pos = positive & is_urgent
    ood, unc = _flag(cases, "ood"), _flag(cases, "uncertain")
    group = np.select([urgent_pos.any(axis=1), ood | unc, positive.any(axis=1)], [1, 2, 3], 4)
    with np.errstate(invalid="ignore"):
        top_urgent = np.where(urgent_pos, cal, -np.inf).max(axis=1)
        top_pos = np.where(positive, cal, -np.inf).max(axis=1)
    uncertainty, ood_score = _num(cases, "uncertainty"), _num(cases, "ood_score")
    key1 = np.select([group == 1, group == 3], [top_urgent, top_pos], uncertainty)
    key2 = np.where(group == 2, ood_score, np.nan)
    frame = cases.assign(_r=np.arange(len(cases)))
    out = _sorted(frame, [key1, np.where(np.isnan(key2), -np.inf, key2)], group)
    rows = out.pop("_r").to_numpy()
    names = np.asarray(FINDINGS)
    reasons = []
    for r in rows:
        g = group[r]
        if g == 1:
            hits = names[urgent_pos[r]]
            reasons.append("urgent: positive call for " + ", ".join(
                f"{f} (P {cal[r, FINDINGS.index(f)]:.2f})" for f in hits))
        elif g == 2:
            parts = ([f"out of distribution (score {ood_score[r]:.1f})"] if ood[r] else []) + \
                    ([_uncertainty_text(cases.iloc[r], "uncertain")] if unc[r] else [])
            reasons.append("; ".join(parts))
        elif g == 3:
            reasons.append("positive call: " + ", ".join(names[positive[r]]))
        else:
            reasons.append("no positive call, in distribution, not uncertain" + (
                "" if isinstance(cases.iloc[r].get("operating_point"), str)
                else " (no readout: no calls)"))
    out.insert(0, "group", group[rows])
    out["reason"] = reasons
    return out


def _uncertainty_text(row, word: str = "uncertainty") -> str:
    score = row.get("uncertainty")
    if score is None or pd.isna(score):
        return f"{word}: no MC-dropout score"
    rule = row.get("uncertainty_rule")
    return f"{word} {float(score):.3f}" + (f" (rule {rule})" if isinstance(rule, str) else "")


def _likely_negative(cases: pd.DataFrame, thresholds) -> pd.DataFrame:
    if thresholds is None:
        points = set(cases["operating_point"].dropna())
        if points != {"sensitivity"} or cases["operating_point"].isna().any():
            raise ValueError("the likely-negative list needs the high-sensitivity operating "
                             "point's thresholds (the checkpoint's readout: cxr calibrate); "
                             f"these cases were called at {sorted(points) or 'no point'}")
        called = cases[CALL].to_numpy() == "positive"
        margin = np.full(len(cases), np.nan)  # no thresholds: order by uncertainty instead
    else:
        t = np.asarray(thresholds, dtype=float)
        if t.shape != (len(FINDINGS),):
            raise ValueError(f"sensitivity thresholds of shape {t.shape}: expected (14,)")
        if not np.isfinite(t).any():
            raise ValueError("the readout has no high-sensitivity threshold for any finding "
                             "(each validation split had one class): no likely-negative list")
        cal = cases[CAL].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(t)
        called = np.where(ok, cal >= np.where(ok, t, 0), False) | np.isnan(cal[:, ok]).any(
            axis=1, keepdims=True)  # a case without calibrated values cannot qualify
        diff = np.where(ok, cal - np.where(ok, t, 0), -np.inf)
        margin = diff.max(axis=1)
    keep = ~called.any(axis=1) & (_flag(cases, "uncertain") == 0) \
        & (pd.to_numeric(cases["ood"], errors="coerce").to_numpy() == 0)
    sub = cases[keep].reset_index(drop=True)
    m = margin[keep]
    out = _sorted(sub.assign(_m=m), [-m if thresholds is not None else -_num(sub, "uncertainty")])
    reasons = []
    for _, row in out.iterrows():
        if thresholds is None:
            reasons.append("no positive call at the high-sensitivity point, in distribution, "
                           "not uncertain")
            continue
        cal = np.array([row[c] for c in CAL], dtype=float)
        k = int(np.argmax(np.where(np.isfinite(t), cal - np.where(np.isfinite(t), t, 0),
                                   -np.inf)))
        reasons.append(f"no positive call at the high-sensitivity point; closest: {FINDINGS[k]} "
                       f"(P {cal[k]:.2f} < {t[k]:.2f})")
    out = out.drop(columns="_m")
    out["reason"] = reasons
    return out


def sensitivity_sentence(readout) -> str:
    """The high-sensitivity point's validation sensitivity (range over the findings)."""
    if readout is None:
        return "Without a readout there is no high-sensitivity point, so no list."
    sens = [readout.points["sensitivity"][f].get("val_sensitivity") for f in readout.labels]
    known = np.array([s for s in sens if s is not None and np.isfinite(s)], float)
    if known.size == 0:
        return "The high-sensitivity point has no validation sensitivity for any finding."
    missing = len(sens) - known.size
    unchecked = (f" {missing} finding(s) have no threshold at that point and are not checked."
                 if missing else "")
    points = readout.points["sensitivity"]
    missed = [f for f in readout.labels if points[f].get("target_met") is False]
    fallback = (f" {len(missed)} finding(s) have too few validation positives for that bound "
                "and use their most sensitive threshold instead." if missed else "")
    by_bound = any("val_sensitivity_lcb" in points[f] for f in readout.labels)
    rule = ("holds with 95% confidence (its lower bound)" if by_bound
            else "(by the estimate: a readout from before the lower-bound rule)")
    return (f"That point was chosen so that validation sensitivity >= {readout.target:.2f} "
            f"{rule}; it "
            f"reached {known.min():.2f} to {known.max():.2f} across the findings, so about "
            f"{1 - known.min():.0%} of a finding's positive films can still be on this list."
            + fallback + unchecked)
