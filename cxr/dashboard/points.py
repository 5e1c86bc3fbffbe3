"""The readout's operating points as a reader sees them: each finding's validation sensitivity
and specificity with its 95% interval, and one caption per point saying how sure its target is
(cxr/evaluation/operating_points.py chooses them by a lower confidence bound).

    >>> from cxr.dashboard.points import point_caption, interval_text
    >>> st.caption(point_caption(readout, "sensitivity"))   # Predict and Triage pages
    >>> interval_text(readout.points["sensitivity"]["Mass"], "sensitivity")  # "0.93 (0.86-0.97)"

Readouts written before the lower-bound rule carry no interval: the text says so instead of
showing a bare number as if it were sure.
"""
from __future__ import annotations

import math

from cxr.labels import FINDINGS

DISCLAIMER = "Research use only, not for diagnosis."
TARGETED = {"sensitivity": "high-sensitivity", "specificity": "high-specificity"}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def interval_text(row: dict, rate: str) -> str:
    """'0.93 (95% CI 0.86-0.97)' for a point's validation `rate` (sensitivity / specificity);
    'n/a' without a threshold; the bare value and '(no interval: older readout)' without one."""
    value = row.get(f"val_{rate}")
    if not _finite(value) or not _finite(row.get("threshold")):
        return "n/a"
    ci = row.get(f"val_{rate}_ci")
    if not ci or not all(_finite(x) for x in ci):
        return f"{value:.2f} (no interval: older readout)"
    return f"{value:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f})"


def point_caption(readout, point: str) -> str:
    """One caption for the calls at `point`: the target and how sure it is on validation, the
    range over the findings, and every finding whose target could not be met (named, with its
    number of validation positives or negatives). None: no readout."""
    if readout is None:
        return ("No readout for this checkpoint: no operating point, no validation "
                f"sensitivity or specificity. {DISCLAIMER}")
    rows = {f: readout.points[point][f] for f in readout.labels}
    if point not in TARGETED:
        sens = [r.get("val_sensitivity") for r in rows.values()]
        known = [s for s in sens if _finite(s)]
        span = f"{min(known):.2f} to {max(known):.2f}" if known else "n/a"
        return (f"Youden point (sensitivity + specificity - 1 largest on validation): "
                f"validation sensitivity {span} across the findings; no target is promised. "
                f"{DISCLAIMER}")
    rate = point
    lcbs = [r.get(f"val_{rate}_lcb") for r in rows.values() if _finite(r.get("threshold"))]
    values = [r.get(f"val_{rate}") for r in rows.values() if _finite(r.get("threshold"))]
    if not values:
        return f"The {TARGETED[point]} point has no threshold for any finding. {DISCLAIMER}"
    head = (f"{TARGETED[point].capitalize()} point: validation {rate} {min(values):.2f} to "
            f"{max(values):.2f} across the findings")
    if not any(_finite(x) for x in lcbs):
        return (f"{head}; chosen by the point estimate >= {readout.target:.2f} (an older "
                f"readout: no confidence bound; run `cxr calibrate` again). {DISCLAIMER}")
    unmet = [f for f, r in rows.items() if r.get("target_met") is False]
    count = "n_val_positive" if point == "sensitivity" else "n_val_negative"
    who = "positives" if point == "sensitivity" else "negatives"
    missed = ("" if not unmet else
              f" Not met for {len(unmet)} finding(s), too few validation {who}: "
              + ", ".join(f"{f} ({rows[f].get(count)})" for f in unmet)
              + f"; the most {'sensitive' if point == 'sensitivity' else 'specific'} threshold "
              "is used for them.")
    lows = [x for x in lcbs if _finite(x)]
    return (f"{head}, chosen so that its 95% lower confidence bound is >= {readout.target:.2f} "
            f"(lower bounds {min(lows):.2f} to {max(lows):.2f}).{missed} {DISCLAIMER}")


def interval_columns(readout, point: str, findings=FINDINGS) -> dict[str, list[str]]:
    """{"val sensitivity (95% CI)": [...], "val specificity (95% CI)": [...]} in `findings`
    order: the Predict page's table columns."""
    rows = readout.points[point]
    return {f"val {rate} (95% CI)": [interval_text(rows.get(f, {}), rate) for f in findings]
            for rate in ("sensitivity", "specificity")}
