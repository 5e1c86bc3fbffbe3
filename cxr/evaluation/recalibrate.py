"""`cxr calibrate --from-worklist DB --checkpoint CKPT`: refit a readout's temperatures (or Platt
maps) and operating points on the site's reviewed cases of that checkpoint.

    cxr calibrate --from-worklist data/worklist.sqlite --checkpoint runs/fusion/best.pt \
        [--holdout-share 0.25] [--min-positives 10]

- The cases are the checkpoint's decided cases in the worklist, with the reviewer's findings as
  labels (the rules of cxr/audit.py: second reads and cases without a readout are left out).
  Films of the run's own split (RUN_DIR/split.csv: training, validation or test, by file name)
  are left out and counted, so a refit never sees the run's training or test films (the demo's
  worklist holds its test split: it is refused).
- They are ordered by decision time; the LATER `--holdout-share` of them is held out and only
  scored: its calibration error (ECE, macro over the refitted findings) before and after.
- A finding is refitted when the earlier part has at least `--min-positives` positives and as
  many negatives; the others keep their validation fit, and the command names them. With no
  finding to refit, or too few cases, nothing is written.
- The OOD guard is kept. The previous sidecar is kept beside it (best.readout.<time>.pt) and
  the new one's provenance says where it was fitted: the worklist, the decisions' date range,
  the number of cases, the findings refitted, the held-out ECE, and the previous file.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.labels import FINDINGS

HOLDOUT_SHARE, MIN_POSITIVES, MIN_HOLDOUT = 0.25, 10, 5
PROB = [f"prob_{f}" for f in FINDINGS]


def reviewed_labels(wl, checkpoint_hash: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The checkpoint's usable decided cases, oldest decision first, and their reference
    findings (N, 14) (cxr.audit.reference)."""
    from cxr.audit import reference
    cases = wl.cases(checkpoint_hash=checkpoint_hash, sort="created_at", ascending=True)
    used, y, _ = reference(cases)
    cases, y = cases[used].reset_index(drop=True), y[used]
    order = np.argsort(cases["decided_at"].to_numpy(dtype=str), kind="mergesort")
    return cases.iloc[order].reset_index(drop=True), y[order].astype(np.uint8)


def split_films(checkpoint: Path) -> set[str] | None:
    """File names of the run's split (RUN_DIR/split.csv beside the checkpoint), None without."""
    from cxr.rundir import RunDir
    path = RunDir(Path(checkpoint).parent).split
    if not path.is_file():
        return None
    return set(pd.read_csv(path, usecols=["image"], dtype=str)["image"])


def leave_out_split(cases: pd.DataFrame, y: np.ndarray, films: set[str] | None):
    """(cases, y) without the films of the run's split, and how many were left out."""
    if not films:
        return cases, y, 0
    inside = cases["image"].map(lambda key: Path(str(key)).name in films).to_numpy(bool)
    return cases[~inside].reset_index(drop=True), y[~inside], int(inside.sum())


def macro_ece(y: np.ndarray, p: np.ndarray, columns) -> float | None:
    from cxr.evaluation.metrics import ece
    values = [ece(y[:, k], p[:, k]) for k in columns]
    return float(np.mean(values)) if values else None


def recalibrate(readout, cases: pd.DataFrame, y: np.ndarray, holdout_share=HOLDOUT_SHARE,
                min_positives: int = MIN_POSITIVES, source: str = "") -> tuple:
    """(new Readout, summary dict) fitted on the earlier cases; the later ones held out."""
    from cxr.evaluation.calibration import Calibration, fit_calibration
    from cxr.evaluation.operating_points import choose_points

    if not 0 < holdout_share < 1:
        raise ValueError(f"--holdout-share {holdout_share}: must be between 0 and 1")
    n_hold = round(len(cases) * holdout_share)
    n_fit = len(cases) - n_hold
    if n_hold < MIN_HOLDOUT or n_fit < 2 * min_positives:
        raise ValueError(f"only {len(cases)} reviewed cases of this checkpoint: need at least "
                         f"{2 * min_positives} to fit and {MIN_HOLDOUT} to hold out "
                         f"(holdout share {holdout_share}); nothing was written")
    labels = list(readout.labels)
    p = cases[PROB].to_numpy(dtype=float)[:, [FINDINGS.index(f) for f in labels]]
    y = y[:, [FINDINGS.index(f) for f in labels]]
    p_fit, y_fit, p_hold, y_hold = p[:n_fit], y[:n_fit], p[n_fit:], y[n_fit:]
    pos = y_fit.sum(axis=0)
    ok = (pos >= min_positives) & (n_fit - pos >= min_positives)
    kept = {f: f"{int(pos[k])} positives, {int(n_fit - pos[k])} negatives"
            for k, f in enumerate(labels) if not ok[k]}
    if not ok.any():
        raise ValueError(f"no finding has {min_positives} positives and {min_positives} "
                         f"negatives among the {n_fit} earlier reviewed cases; nothing was "
                         f"written (keeping the validation fit of all: {_listed(kept)})")
    fit = fit_calibration(y_fit, p_fit, readout.calibration.method)
    old = readout.calibration
    cal = Calibration(old.method, np.where(ok, fit.a, old.a), np.where(ok, fit.b, old.b),
                      np.where(ok, fit.fitted, old.fitted))
    new = replace(readout, calibration=cal)
    points_fit = choose_points(y_fit, new.calibrate(p_fit), labels, readout.target)
    points = {pt: {f: (points_fit[pt][f] if ok[k] else readout.points[pt][f])
                   for k, f in enumerate(labels)} for pt in readout.points}
    new = replace(new, points=points)
    refit = [k for k in range(len(labels)) if ok[k]]
    dates = cases["decided_at"].astype(str)
    summary = {
        "fitted_on": "worklist", "worklist": source, "n_cases": int(n_fit),
        "date_range": [dates.iloc[0], dates.iloc[n_fit - 1]],
        "holdout": {"n_cases": int(n_hold), "date_range": [dates.iloc[n_fit], dates.iloc[-1]],
                    "ece_before": macro_ece(y_hold, readout.calibrate(p_hold), refit),
                    "ece_after": macro_ece(y_hold, new.calibrate(p_hold), refit),
                    "per_finding": {labels[k]: {
                        "ece_before": macro_ece(y_hold, readout.calibrate(p_hold), [k]),
                        "ece_after": macro_ece(y_hold, new.calibrate(p_hold), [k])}
                        for k in refit}},
        "findings_refit": [labels[k] for k in refit],
        "findings_kept_validation_fit": kept, "min_positives": int(min_positives),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    provenance = dict(readout.provenance)
    provenance["fitted_on"] = {**provenance.get("fitted_on", {}),
                               "calibration": "worklist (refitted findings), else val",
                               "operating_points": "worklist (refitted findings), else val"}
    provenance["recalibration"] = summary
    return replace(new, provenance=provenance), summary


def _listed(kept: dict) -> str:
    return "; ".join(f"{f} ({why})" for f, why in kept.items()) or "none"


def in_force(readout) -> str:
    """One line: which readout a page or a CLI is using (validation, or refitted at the site)."""
    if readout is None:
        return "No readout in force: no calibration, operating points or OOD guard."
    r = readout.provenance.get("recalibration")
    if not r:
        return ("Readout in force: fitted on the run's validation split "
                f"({readout.provenance.get('n_val_images', '?')} images).")
    d0, d1 = (str(x)[:10] for x in r["date_range"])
    return (f"Readout in force: refitted on {r['n_cases']} reviewed cases of the worklist "
            f"{r['worklist']} (decisions {d0} to {d1}) for {len(r['findings_refit'])} "
            f"finding(s); the others keep their validation fit.")


def run(args) -> int:
    """`cxr calibrate --from-worklist DB --checkpoint CKPT`."""
    from cxr.atomic import write_bytes
    from cxr.hashing import file_sha256
    from cxr.readout import load_readout, readout_path, save_readout
    from cxr.worklist import Worklist

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    readout = load_readout(ckpt)
    if readout is None:
        raise ValueError(f"{ckpt} has no readout to refit: run `cxr calibrate --checkpoint "
                         f"{ckpt}` (its validation fit) first")
    wl = Worklist(args.from_worklist, create=False)
    sha = file_sha256(ckpt)
    cases, y = reviewed_labels(wl, sha)
    films = split_films(ckpt)
    cases, y, in_split = leave_out_split(cases, y, films)
    if films is None:
        print(f"note: no split.csv beside {ckpt}: cannot check that no reviewed case is a film "
              "of the run's own split")
    elif in_split:
        print(f"left out {in_split} reviewed case(s) that are films of the run's own split "
              "(training, validation or test)")
    source = str(getattr(wl, "url_masked", args.from_worklist))
    new, s = recalibrate(readout, cases, y, args.holdout_share, args.min_positives, source)
    s["left_out_run_split"] = in_split  # s is the new readout's provenance["recalibration"]
    old = readout_path(ckpt)
    keep = old.with_name(f"{old.name[:-len('.pt')]}.{time.strftime('%Y%m%dT%H%M%S')}.pt")
    write_bytes(keep, old.read_bytes())
    shutil.copystat(old, keep)
    new.provenance["recalibration"]["previous_readout"] = str(keep)
    path = save_readout(new, ckpt)
    h = s["holdout"]
    if s["findings_kept_validation_fit"]:
        print("too few positives to refit (validation fit kept): "
              + _listed(s["findings_kept_validation_fit"]))
    print(f"refitted {', '.join(s['findings_refit'])} on {s['n_cases']} reviewed cases "
          f"(decisions {s['date_range'][0][:16]} to {s['date_range'][1][:16]}); held out the "
          f"later {h['n_cases']}: macro ECE {h['ece_before']:.4f} -> {h['ece_after']:.4f}")
    print(f"kept the previous readout as {keep}\nwrote {path}")
    return 0
