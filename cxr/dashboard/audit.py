"""The Audit page's logic: one queue's site audit (cxr/audit.py) as tables, figures and captions.

    report = queue_audit(wl, queue.checkpoint_hash, checkpoint)   # audit.json's dict
    finding_frame(report), decile_frame(report, "uncertainty"), reviewer_frame(report)
    headline(report), simulated_note(report), figures(report)

The page reads the same worklist as Triage; it is for signed-in reviewers (local mode counts).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr.audit import LIMITS, RATES, audit_queue, caption, figures  # noqa: F401 (page uses)

PAGE_BOOTSTRAP = 500  # resamples on the page: CIs to two decimals in about a second
RATE_LABELS = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV",
               "npv": "NPV"}


def queue_audit(wl, checkpoint_hash: str, checkpoint: Path | None = None,
                n_bootstrap: int = PAGE_BOOTSTRAP) -> dict | None:
    """The queue's audit, or None while none of its cases is decided."""
    cases = wl.cases(checkpoint_hash=checkpoint_hash)
    if not (cases["status"] != "pending").any():
        return None
    return audit_queue(wl, checkpoint_hash, checkpoint, n_bootstrap=n_bootstrap)


def _with_ci(value, ci) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def finding_frame(report: dict) -> pd.DataFrame:
    """One row per finding: counts, each rate with its 95% CI, site and validation
    prevalence; findings no decided case bears on (no call made) are left out."""
    rows = []
    for f, r in report["findings"].items():
        if r["tp"] + r["fp"] + r["tn"] + r["fn"] == 0:
            continue
        row = {"finding": f, "TP": r["tp"], "FP": r["fp"], "TN": r["tn"], "FN": r["fn"],
               "uncertain calls": r["n_uncertain_calls"]}
        row |= {RATE_LABELS[k]: _with_ci(r[k], r[f"{k}_ci"]) for k in RATES}
        row["site prevalence"] = r["site_prevalence"]
        row["validation prevalence"] = r["validation_prevalence"]
        rows.append(row)
    return pd.DataFrame(rows)


def decile_frame(report: dict, key: str) -> pd.DataFrame:
    """Disagreement rate per decile of the uncertainty ('uncertainty') or OOD ('ood') score."""
    return pd.DataFrame([{"decile": d["decile"], "cases": d["n"], "disagreed": d["disagreed"],
                          "rate": d["rate"], "score from": d["score_min"],
                          "score to": d["score_max"]} for d in report[key]["deciles"]])


def reviewer_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame([{"reviewer": r["reviewer"], "decisions": r["decisions"],
                          "cases": r["cases"], "first": r["first"][:16], "last": r["last"][:16],
                          "per active day": round(r["per_active_day"], 1)}
                         for r in report["throughput"]["reviewers"]])


def headline(report: dict) -> str:
    """The AUROCs for disagreement and the pending share, in one line."""
    u, o = report["uncertainty"], report["ood"]
    return (f"Does uncertainty predict disagreement? AUROC of the uncertainty score "
            f"{_with_ci(u['auroc'], u['auroc_ci'])} and of the OOD score "
            f"{_with_ci(o['auroc'], o['auroc_ci'])} for 'the reviewer disagreed' "
            f"({u['n_disagreed']} of {u['n_cases']} cases). Pending: {report['n_pending']} of "
            f"{report['n_cases_in_queue']} ({report['share_pending']:.0%}).")


def simulated_note(report: dict) -> str | None:
    """Said prominently when some decisions come from the demo's simulated reviewer."""
    t = report["throughput"]
    if not t["n_simulated"]:
        return None
    return (f"{t['n_simulated']} of {t['n_decisions']} decisions were made by the demo's "
            "SIMULATED reviewer (from the synthetic data's labels), not by a person: these "
            "figures only show what the audit looks like.")
