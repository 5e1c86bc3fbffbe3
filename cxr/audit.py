"""`cxr audit`: how one model's queue fares against its reviewers at this site.

    cxr audit --db data/worklist.sqlite --model fusion --out out/audit [--checkpoint RUN/best.pt]

    >>> from cxr.audit import audit_queue
    >>> report = audit_queue(Worklist(db), checkpoint_hash=h)     # the dict audit.json holds

The reference is the reviewer's reading of each decided case (its latest decision):
- `agree`: the model's positive calls (or the findings the reviewer ticked, when some were);
- `disagree`: the findings the reviewer says are present (none ticked: No Finding);
- `second_read`: left out, and counted.
The model's side is each case's call at the operating point it was imported with (the point in
force); an `uncertain` call is no call: left out of that finding's table and counted, as are
`n/a` findings and cases imported without a readout. What it reports:
- per finding sensitivity, specificity, PPV and NPV with 95% bootstrap CIs (cases resampled:
  the worklist holds no patient id, so films of one patient count as independent) and the
  counts behind them; the site's prevalence (among the decided cases) beside the validation
  prevalence (the readout's provenance, else the run's split.json);
- does uncertainty predict disagreement: among agree/disagree cases, the disagreement rate by
  uncertainty decile and the AUROC of the uncertainty score for "the reviewer disagreed" (equal
  to scikit-learn's roc_auc_score) with a bootstrap CI; the same for the OOD score;
- reviewer throughput (decisions per reviewer and per day) and the share still pending.
Limits, said in the Markdown too: reviewers are not ground truth, and decided cases are not a
random sample of the site's films (reviewers choose what to read, in a queue order).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.labels import FINDINGS

N_BOOTSTRAP, DECILES = 1000, 10
CALL = [f"call_{f}" for f in FINDINGS]
RATES = ("sensitivity", "specificity", "ppv", "npv")
LIMITS = ("Reviewers are not ground truth: the reference is a reviewer's reading of the film, "
          "without follow-up or other tests. Decided cases are not a random sample: reviewers "
          "choose what to read and in which queue order, so the figures describe the decided "
          "cases, not every film of the site. Research use only, not for diagnosis.")


def select_queue(sources: pd.DataFrame, model: str | None = None,
                 checkpoint_hash: str | None = None) -> pd.Series:
    """The one queue (Worklist.sources() row) that `model` / `checkpoint_hash` name; an error
    listing the queues when none or several match."""
    rows = sources
    if model is not None:
        rows = rows[rows["model"] == model]
    if checkpoint_hash is not None:
        rows = rows[rows["checkpoint_hash"].str.startswith(checkpoint_hash)]
    if len(rows) == 1:
        return rows.iloc[0]
    listed = "; ".join(f"{r.model} {r.checkpoint_hash[:12]} ({r.cases} cases)"
                       for r in sources.itertuples())
    problem = "no queue matches" if rows.empty else "several queues match"
    raise ValueError(f"{problem} (model {model!r}, checkpoint {checkpoint_hash!r}): pass "
                     f"--model and/or --checkpoint-hash; the worklist holds {listed or 'none'}")


def reference(cases: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict]:
    """(used (N,) bool, y (N, 14) bool reference findings, counts of what was left out)."""
    used = np.zeros(len(cases), bool)
    y = np.zeros((len(cases), len(FINDINGS)), bool)
    left = {"second_read": 0, "disagree_without_findings": 0, "no_readout": 0}
    for i, row in enumerate(cases.itertuples(index=False)):
        if row.status not in ("agree", "disagree"):
            left["second_read"] += row.status == "second_read"
            continue
        if not isinstance(row.operating_point, str):
            left["no_readout"] += 1
            continue
        ticked = json.loads(row.corrected) if isinstance(row.corrected, str) else None
        if row.status == "disagree" and ticked is None:
            left["disagree_without_findings"] += 1
            continue
        if ticked is None:  # agree, nothing ticked: the model's positive calls
            y[i] = [getattr(row, c) == "positive" for c in CALL]
        else:
            y[i] = np.isin(np.asarray(FINDINGS), ticked)
        used[i] = True
    return used, y, left


def _percentile_ci(samples) -> list[float] | None:
    from cxr.evaluation.bootstrap import percentile_ci
    return percentile_ci(samples)


def finding_table(y: np.ndarray, calls: np.ndarray, n_bootstrap: int = N_BOOTSTRAP,
                  seed: int = 0, val_prevalence: dict | None = None) -> dict:
    """{finding: {tp, fp, tn, fn, n_uncertain_calls, n_cases, n_reference_positive,
    site_prevalence, validation_prevalence, <rate>, <rate>_ci}} from reference findings y
    (N, 14) and calls (N, 14): positive / negative count, uncertain and n/a are left out."""
    from cxr.evaluation.operating_points import _bootstrap_rates, _rates
    made = np.isin(calls, ("positive", "negative"))
    pos = calls == "positive"
    cols = np.stack([pos & y, pos & ~y, ~pos & ~y & made, ~pos & y & made], axis=-1) \
        & made[..., None]
    cols = cols.astype(np.float64)
    full = _rates(*np.moveaxis(cols.sum(axis=0), -1, 0))
    boot = (_bootstrap_rates(cols, np.arange(len(y)), n_bootstrap, seed)
            if n_bootstrap > 0 and len(y) else None)
    out = {}
    for k, f in enumerate(FINDINGS):
        tp, fp, tn, fn = (int(v) for v in cols[:, k].sum(axis=0))
        row = {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
               "n_uncertain_calls": int((calls[:, k] == "uncertain").sum()),
               "n_no_threshold": int((calls[:, k] == "n/a").sum()),
               "n_cases": int(len(y)), "n_reference_positive": int(y[:, k].sum()),
               "site_prevalence": float(y[:, k].mean()) if len(y) else None,
               "validation_prevalence": (val_prevalence or {}).get(f)}
        for rate in RATES:
            value = float(full[rate][k])
            row[rate] = value if np.isfinite(value) else None
            row[f"{rate}_ci"] = _percentile_ci(boot[rate][:, k]) if boot is not None else None
        out[f] = row
    return out


def score_vs_disagreement(score: np.ndarray, disagreed: np.ndarray,
                          n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """AUROC of `score` for "the reviewer disagreed" (scikit-learn's roc_auc_score), its 95%
    case-bootstrap CI, and the disagreement rate by score decile. Cases without a score are
    left out (counted)."""
    from sklearn.metrics import roc_auc_score

    from cxr.evaluation.bootstrap import resample_counts, weighted_auc
    score, disagreed = np.asarray(score, float), np.asarray(disagreed, bool)
    ok = np.isfinite(score)
    s, d = score[ok], disagreed[ok]
    out = {"n_cases": int(ok.sum()), "n_without_score": int((~ok).sum()),
           "n_disagreed": int(d.sum()), "auroc": None, "auroc_ci": None, "deciles": []}
    if len(s) == 0:
        return out
    if 0 < d.sum() < len(d):
        out["auroc"] = float(roc_auc_score(d, s))
        if n_bootstrap > 0:
            boots = np.concatenate([weighted_auc(d, s, codes, counts) for counts, codes
                                    in resample_counts(np.arange(len(s)), n_bootstrap, seed)])
            out["auroc_ci"] = _percentile_ci(boots)
    bins = pd.qcut(pd.Series(s).rank(method="first"), q=min(DECILES, len(s)), labels=False)
    for b in range(int(bins.max()) + 1):
        m = (bins == b).to_numpy()
        out["deciles"].append({"decile": b + 1, "n": int(m.sum()), "disagreed": int(d[m].sum()),
                               "rate": float(d[m].mean()), "score_min": float(s[m].min()),
                               "score_max": float(s[m].max())})
    return out


def throughput(history: pd.DataFrame) -> dict:
    """Decisions per reviewer (n, cases, first, last, per active day) and per day."""
    if history.empty:
        return {"reviewers": [], "per_day": {}, "n_decisions": 0, "n_simulated": 0}
    h = history.assign(day=history["created_at"].str[:10])
    reviewers = []
    for name, part in h.groupby("reviewer", sort=True):
        days = part["day"].nunique()
        reviewers.append({"reviewer": name, "decisions": int(len(part)),
                          "cases": int(part["case_id"].nunique()),
                          "first": part["created_at"].min(), "last": part["created_at"].max(),
                          "per_active_day": float(len(part) / days)})
    simulated = int(h["simulated"].fillna(0).astype(bool).sum()) if "simulated" in h else 0
    return {"reviewers": reviewers, "n_decisions": int(len(h)), "n_simulated": simulated,
            "per_day": {d: int(n) for d, n in h.groupby("day").size().items()}}


def validation_prevalence(checkpoint: Path | None) -> tuple[dict | None, str | None]:
    """({finding: validation prevalence}, where it came from) of a checkpoint: its readout's
    provenance (`val_prevalence`, cxr calibrate), else RUN_DIR/split.json's split report."""
    if checkpoint is None:
        return None, None
    from cxr.readout import load_readout
    readout = load_readout(checkpoint)
    if readout is not None and readout.provenance.get("val_prevalence"):
        return dict(readout.provenance["val_prevalence"]), "readout provenance"
    split = Path(checkpoint).parent / "split.json"
    try:
        report = json.loads(split.read_text())["report"]["prevalence_images"]
        return {f: report[f]["val"] for f in FINDINGS}, str(split)
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def audit_queue(wl, checkpoint_hash: str, checkpoint: Path | None = None,
                n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """The audit of one queue (a checkpoint's cases), JSON-safe: what audit.json holds."""
    from cxr.jsonsafe import json_safe
    cases = wl.cases(checkpoint_hash=checkpoint_hash, sort="created_at", ascending=True)
    if cases.empty:
        raise ValueError(f"no case of checkpoint {checkpoint_hash[:12]} in the worklist")
    used, y, left = reference(cases)
    decided = cases[used]
    dates = decided["decided_at"]
    prevalence, prevalence_from = validation_prevalence(checkpoint)
    calls = decided[CALL].to_numpy(dtype=object)
    pair = cases[cases["status"].isin(["agree", "disagree"])]
    disagreed = (pair["status"] == "disagree").to_numpy()
    history = wl.export_table(history=True)
    history = history[history["checkpoint_hash"] == checkpoint_hash]
    report = {
        "model": str(cases["model"].iloc[0]), "checkpoint_hash": checkpoint_hash,
        "operating_point": sorted(set(cases["operating_point"].dropna())),
        "date_range": [dates.min(), dates.max()] if len(dates) else [None, None],
        "n_cases_in_queue": len(cases),
        "n_pending": int((cases["status"] == "pending").sum()),
        "share_pending": float((cases["status"] == "pending").mean()),
        "n_decided_used": int(used.sum()), "left_out": left,
        "validation_prevalence_from": prevalence_from,
        "findings": finding_table(y[used], calls, n_bootstrap, seed, prevalence),
        "uncertainty": score_vs_disagreement(pd.to_numeric(pair["uncertainty"]).to_numpy(float),
                                             disagreed, n_bootstrap, seed),
        "ood": score_vs_disagreement(pd.to_numeric(pair["ood_score"]).to_numpy(float),
                                     disagreed, n_bootstrap, seed + 1),
        "throughput": throughput(history), "n_bootstrap": n_bootstrap, "seed": seed,
        "limits": LIMITS}
    report["uncertainty_auroc"] = report["uncertainty"]["auroc"]
    report["uncertainty_auroc_ci"] = report["uncertainty"]["auroc_ci"]
    report["ood_auroc"] = report["ood"]["auroc"]
    report["ood_auroc_ci"] = report["ood"]["auroc_ci"]
    return json_safe(report)


# -- output ----------------------------------------------------------------------------------
def caption(report: dict, n: int | None = None) -> str:
    """What every figure carries: model, checkpoint hash, date range, number of cases."""
    d0, d1 = (str(x)[:16] if x else "?" for x in report["date_range"])
    n = report["n_decided_used"] if n is None else n
    return (f"{report['model']} · checkpoint {report['checkpoint_hash'][:12]} · decisions "
            f"{d0} to {d1} · n = {n} cases · research use only")


def figures(report: dict) -> dict:
    """{file name: matplotlib Figure}: disagreement by uncertainty and by OOD decile, and the
    per-finding rates with their CIs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for key, label in (("uncertainty", "uncertainty score"), ("ood", "OOD score")):
        part = report[key]
        fig, ax = plt.subplots(figsize=(7, 4))
        dec = part["deciles"]
        bars = ax.bar([d["decile"] for d in dec], [d["rate"] for d in dec], color="#1f77b4")
        ax.bar_label(bars, [f"n={d['n']}" for d in dec], fontsize=7)
        ax.set_xlabel(f"{label} decile (1 = lowest)")
        ax.set_ylabel("share the reviewer disagreed")
        ax.set_ylim(0, 1)
        auc = part["auroc"]
        ci = part["auroc_ci"]
        ax.set_title(f"Disagreement by {label}: AUROC "
                     + (f"{auc:.3f}" if auc is not None else "n/a")
                     + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
        fig.text(0.01, 0.01, caption(report, part["n_cases"]), fontsize=7)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        out[f"disagreement_by_{key}.png"] = fig
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharey=True)
    for ax, rate in zip(axes, ("sensitivity", "specificity")):
        rows = [(f, r) for f, r in report["findings"].items() if r[rate] is not None]
        ys = np.arange(len(rows))
        vals = [r[rate] for _, r in rows]
        lo = [r[rate] - (r[f"{rate}_ci"] or [r[rate]] * 2)[0] for _, r in rows]
        hi = [(r[f"{rate}_ci"] or [r[rate]] * 2)[1] - r[rate] for _, r in rows]
        ax.errorbar(vals, ys, xerr=[lo, hi], fmt="o")
        ax.set_yticks(ys, [f for f, _ in rows])
        ax.set_xlim(0, 1.02)
        ax.set_xlabel(f"{rate} vs reviewers (95% CI)")
    fig.text(0.01, 0.01, caption(report), fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out["rates_by_finding.png"] = fig
    return out


def _fmt(value, ci=None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def _cell(text) -> str:
    """A name as one Markdown table cell: its own `|` and line breaks cannot split the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    lines = [f"# Site audit: {report['model']} (checkpoint {report['checkpoint_hash'][:12]})", "",
             f"_{caption(report)}_", "", f"**Limits.** {LIMITS}", "",
             f"Operating point in force: {', '.join(report['operating_point']) or 'none'}. "
             f"{report['n_decided_used']} decided cases used; left out: "
             + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["left_out"].items())
             + f". Pending: {report['n_pending']} of {report['n_cases_in_queue']} "
             f"({report['share_pending']:.0%}).", "",
             "## Per finding, against the reviewers (95% bootstrap CI)", "",
             ("| finding | TP | FP | TN | FN | uncertain calls | sensitivity | specificity | "
              "PPV | NPV | site prevalence | validation prevalence |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f, r in report["findings"].items():
        lines.append(f"| {f} | {r['tp']} | {r['fp']} | {r['tn']} | {r['fn']} | "
                     f"{r['n_uncertain_calls']} | "
                     + " | ".join(_fmt(r[k], r[f"{k}_ci"]) for k in RATES)
                     + f" | {_fmt(r['site_prevalence'])} | {_fmt(r['validation_prevalence'])} |")
    lines += ["", f"Validation prevalence from: {report['validation_prevalence_from'] or 'n/a'}",
              "", "## Does uncertainty predict disagreement?", ""]
    for key, label in (("uncertainty", "Uncertainty score"), ("ood", "OOD score")):
        p = report[key]
        lines += [(f"{label}: AUROC for 'the reviewer disagreed' "
                   f"{_fmt(p['auroc'], p['auroc_ci'])} on {p['n_cases']} cases "
                   f"({p['n_disagreed']} disagreements, {p['n_without_score']} without a "
                   f"score). ![](disagreement_by_{key}.png)"), "",
                  "| decile | n | disagreed | rate | score range |", "|---|---|---|---|---|"]
        lines += [f"| {d['decile']} | {d['n']} | {d['disagreed']} | {d['rate']:.2f} | "
                  f"{d['score_min']:.3f}-{d['score_max']:.3f} |" for d in p["deciles"]]
        lines.append("")
    t = report["throughput"]
    lines += ["## Reviewers", "", f"{t['n_decisions']} decisions ({t['n_simulated']} simulated).",
              "", "| reviewer | decisions | cases | first | last | per active day |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {_cell(r['reviewer'])} | {r['decisions']} | {r['cases']} | {r['first'][:16]} | "
              f"{r['last'][:16]} | {r['per_active_day']:.1f} |" for r in t["reviewers"]]
    return "\n".join(lines) + "\n"


def write_audit(report: dict, out: Path) -> list[Path]:
    """audit.json, audit.md and the PNGs into `out`, each written atomically."""
    import io

    import matplotlib.pyplot as plt

    from cxr.atomic import write_bytes, write_json, write_text
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out / "audit.json", report), write_text(out / "audit.md",
                                                                  markdown(report))]
    for name, fig in figures(report).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        paths.append(write_bytes(out / name, buf.getvalue()))
    return paths


# -- `cxr audit` -----------------------------------------------------------------------------
def add_arguments(parser) -> None:
    from cxr.worklist import DEFAULT_DB
    parser.add_argument("--db", default=str(DEFAULT_DB), help=f"worklist (default {DEFAULT_DB})")
    parser.add_argument("--model", help="the queue's model name (needed when there are several)")
    parser.add_argument("--checkpoint-hash", help="the queue's checkpoint sha256 (or a prefix)")
    parser.add_argument("--checkpoint", type=Path,
                        help="that checkpoint's file, for the validation prevalence")
    parser.add_argument("--out", type=Path, required=True, help="folder for audit.json etc.")
    parser.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP, help="resamples")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from cxr.hashing import file_sha256
    from cxr.worklist import Worklist
    wl = Worklist(args.db, create=False)
    queue = select_queue(wl.sources(), args.model, args.checkpoint_hash)
    if args.checkpoint is not None and file_sha256(args.checkpoint) != queue.checkpoint_hash:
        raise ValueError(f"{args.checkpoint} is not the checkpoint of this queue "
                         f"({queue.checkpoint_hash[:12]})")
    report = audit_queue(wl, queue.checkpoint_hash, args.checkpoint, args.bootstrap, args.seed)
    for path in write_audit(report, args.out):
        print(f"wrote {path}")
    u, o = report["uncertainty"], report["ood"]
    print(f"{report['n_decided_used']} decided cases; disagreement AUROC of the uncertainty "
          f"score {_fmt(u['auroc'], u['auroc_ci'])}, of the OOD score "
          f"{_fmt(o['auroc'], o['auroc_ci'])}. {LIMITS}")
    return 0
