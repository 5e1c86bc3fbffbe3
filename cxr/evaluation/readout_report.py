"""What `cxr evaluate --checkpoint` adds when the checkpoint has a readout (cxr/readout.py): the
`readout` section of metrics.json and eval/calibration_calibrated.csv.

    >>> from cxr.evaluation.readout_report import readout_section
    >>> readout = load_readout(ckpt)                          # None without a sidecar
    >>> applied = readout.apply(mean, features, samples)      # cxr.evaluation.inference.mc_table
    >>> metrics["readout"] = readout_section(ckpt, readout, applied, scored, y, mean, out_dir, args)

The section, on the SCORED split (the readout was fitted on validation and training films):
  available: false + note        when the checkpoint has no sidecar (nothing else is written)
  calibration: {method, per_finding.<Finding>: {ece_before, ece_after, brier_before,
                brier_after, a, b, temperature, fitted}, macro: {ece_*, brier_*}}
  operating_points: {target, youden|sensitivity|specificity: {<Finding>: {threshold,
                val_sensitivity, val_specificity, sensitivity, specificity, ppv, npv,
                <rate>_ci [lo, hi] (patient bootstrap, --bootstrap/--seed), n_called_positive}}}
                (a film is called positive when its calibrated MC mean >= threshold)
  ood: {threshold, share, threshold_method, n_calibration, expected_flag_rate and
        flag_rate_interval (what the readout promises for in-distribution films; the interval
        is null for a readout without a conformal threshold), flag_rate, flag_rate_ci (exact
        Clopper-Pearson 95%), n_flagged, n_images, expected_flagged_range (95% range of the
        count for n_images in-distribution films: beta-binomial) and within_promise (n_flagged
        inside it), note, score_median, score_p95}
  targets_held: {sensitivity|specificity: {findings, target_met_on_val,
                held_on_scored_split, held_where_met_on_val}}: how often each targeted point's
                rate on the scored split is >= the target (`targets_held`)
  fitted_on_scored_split: true for --split val (then every "after" number is in-sample)
  predictions_operating_point: the point of predictions.csv's call_ columns (--operating-point)
calibration_calibrated.csv has calibration.csv's columns for the calibrated probabilities: the
reliability curve after calibration (calibration.csv is the one before).

The OOD scores and calibrated probabilities are those of predictions.csv: `applied` comes from
the MC-dropout pass that made the predictions (its pooled features and samples), so no extra
backbone pass runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr.labels import FINDINGS
from cxr.rundir import EvalDir


def readout_section(checkpoint: Path, readout, applied, rows, y: np.ndarray, mean: np.ndarray,
                    out_dir: Path, args) -> dict:
    """The `readout` section of metrics.json from the checkpoint's readout (None: none) and its
    output on the scored films (cxr.readout.ReadoutOutput); writes calibration_calibrated.csv to
    out_dir (and removes a stale one when the checkpoint has no readout)."""
    from cxr.evaluation.operating_points import point_metrics
    from cxr.evaluation.predictions import write_csv
    from cxr.evaluation.metrics import calibration_table
    from cxr.readout import not_available, readout_path

    calibrated_csv = EvalDir(out_dir).calibrated
    if readout is None:
        calibrated_csv.unlink(missing_ok=True)
        print(f"readout: {not_available(checkpoint)}")
        return {"available": False, "note": not_available(checkpoint)}
    p_cal, score, flagged = applied.calibrated, applied.ood_score, applied.ood_flag
    write_csv(calibration_table(y, p_cal, FINDINGS), calibrated_csv)
    section = {
        "available": True, "sidecar": str(readout_path(checkpoint)),
        "fitted_on_scored_split": args.split == "val",
        "predictions_operating_point": args.operating_point,
        "calibration": calibration_section(y, mean, p_cal, readout.calibration),
        "operating_points": {"target": readout.target, **point_metrics(
            y, p_cal, rows["patient"].to_numpy(), readout.points, FINDINGS, args.bootstrap,
            args.seed)},
        "ood": ood_section(readout.ood, score, flagged)}
    section["targets_held"] = targets_held(section["operating_points"], readout.target)
    c = section["calibration"]["macro"]
    print(f"readout: macro ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f} after "
          f"{readout.calibration.method} scaling; {section['ood']['n_flagged']} of "
          f"{len(flagged)} films flagged out of distribution")
    return section


def targets_held(points: dict, target: float) -> dict:
    """How often the targeted points' validation targets hold on the scored split: per point,
    the findings with a threshold, those whose target was met on validation (by the lower
    bound; None in a readout from before it), and those whose scored-split rate is >= target
    (all of them, and among those met on validation)."""
    out = {}
    for point in ("sensitivity", "specificity"):
        rows = [r for r in points[point].values() if r.get("threshold") is not None
                and np.isfinite(r.get(point, float("nan")))]
        held = [r[point] >= target for r in rows]
        met = [r.get("target_met") for r in rows]
        out[point] = {"findings": len(rows),
                      "target_met_on_val": None if None in met else sum(map(bool, met)),
                      "held_on_scored_split": int(sum(held)),
                      "held_where_met_on_val": None if None in met else
                      int(sum(h for h, m in zip(held, met) if m))}
    return out


def ood_section(ood, score: np.ndarray, flagged: np.ndarray) -> dict:
    """The OOD guard on the scored split: what the readout promised and what it did."""
    from cxr.evaluation.intervals import clopper_pearson, flagged_count_interval
    from cxr.readout import ood_promise

    n, k = int(len(flagged)), int(np.sum(flagged))
    section = {"threshold": ood.threshold, "share": ood.share, **ood_promise(ood),
               "flag_rate": k / n, "flag_rate_ci": list(clopper_pearson(k, n)),
               "n_flagged": k, "n_images": n, "expected_flagged_range": None,
               "within_promise": None, "score_median": float(np.median(score)),
               "score_p95": float(np.percentile(score, 95))}
    if section["flag_rate_interval"] is not None:
        lo, hi = flagged_count_interval(n, ood.n_calibration, 1 - ood.share)
        section.update(expected_flagged_range=[lo, hi], within_promise=lo <= k <= hi)
    return section


def calibration_section(y: np.ndarray, p: np.ndarray, p_cal: np.ndarray, cal) -> dict:
    """ECE and Brier per finding and macro (mean over the 14), before and after the map."""
    from cxr.evaluation.metrics import brier, ece

    per_finding = {name: {
        "ece_before": ece(y[:, k], p[:, k]), "ece_after": ece(y[:, k], p_cal[:, k]),
        "brier_before": brier(y[:, k], p[:, k]), "brier_after": brier(y[:, k], p_cal[:, k]),
        "a": float(cal.a[k]), "b": float(cal.b[k]), "temperature": float(cal.temperature[k]),
        "fitted": bool(cal.fitted[k])} for k, name in enumerate(FINDINGS)}
    keys = ("ece_before", "ece_after", "brier_before", "brier_after")
    macro = {key: float(np.mean([v[key] for v in per_finding.values()])) for key in keys}
    return {"method": cal.method, "per_finding": per_finding, "macro": macro}
