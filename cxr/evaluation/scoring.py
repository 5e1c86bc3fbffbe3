"""Predictions + labels -> metrics.json content, roc.csv and calibration.csv. Shared by both
modes of `cxr evaluate` (a checkpoint, or any model's predictions CSV).

Labels come from a metadata table (`cxr.data.metadata.read_data_entry`); an image without a
row there has no ground truth: it may be predicted, never scored, and scoring it is an error.

    >>> from cxr.evaluation.scoring import labels_for, score, write_outputs
    >>> y, patients = labels_for(preds.images, table, source="predictions.csv")
    >>> metrics = score(y, preds.prob, patients, std=preds.std, n_bootstrap=1000, seed=0)

metrics.json (NaN written as null):
  per_finding.<Finding>: auc, auc_ci [lo, hi], ap, ece (15 bins), brier, threshold (Youden's J
      on VALIDATION; null without validation predictions), sensitivity, specificity, n_pos
  macro_auc, macro_auc_ci, micro_auc, excluded_findings (no positives or no negatives),
  bootstrap {n_resamples, seed, unit: "patient"}, thresholds_from, n_images, n_patients,
  selective {"0.0".."0.3": {referred_fraction, n_kept, macro_auc, excluded_findings}},
  referral_rate_at_threshold, std_threshold, uncertainty_rule (the image score that refers and
  flags: "mean" or "any", cxr.uncertainty; null selective without std_ columns)
  + provenance added by `cxr evaluate`: mode, split, seed (MC dropout + bootstrap), strategy,
  split_seed, split_path, split_content_hash, data_version, labels_file, model, checkpoint,
  checkpoint_sha256, passes, images_missing, pointing_game (with --pointing-game).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr.atomic import write_json
from cxr.evaluation import metrics as m
from cxr.evaluation.bootstrap import auc_confidence_intervals
from cxr.evaluation.predictions import write_csv
from cxr.evaluation.selective import referral_rate, selective_macro_auc
from cxr.labels import FINDINGS
from cxr.rundir import EvalDir
from cxr.uncertainty import DEFAULT_RULE, UNCERTAIN_STD


def labels_for(images, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(y (N, 14) uint8, patients (N,)) for `images` in their order, from a metadata table.

    Images the table lacks are label-free: a ValueError naming how many and which."""
    indexed = table.set_index("image")
    images = pd.Index(images)
    missing = images.difference(indexed.index)
    if len(missing):
        raise ValueError(f"{len(missing)} image(s) in {source} have no labels in the metadata "
                         f"table (first: {', '.join(sorted(missing)[:5])}); label-free images "
                         "can be predicted but never scored")
    rows = indexed.loc[images]
    return rows[list(FINDINGS)].to_numpy(dtype=np.uint8), rows["patient"].to_numpy()


def thresholds_from_validation(y_val: np.ndarray, p_val: np.ndarray) -> np.ndarray:
    """(14,) Youden's J thresholds chosen on validation predictions (NaN where undefined)."""
    return np.array([m.youden_threshold(y_val[:, k], p_val[:, k]) for k in range(y_val.shape[1])])


def score(y: np.ndarray, prob: np.ndarray, patients: np.ndarray, std: np.ndarray | None = None,
          thresholds: np.ndarray | None = None, n_bootstrap: int = 1000, seed: int = 0,
          std_threshold: float = UNCERTAIN_STD, uncertainty_rule: str = DEFAULT_RULE) -> dict:
    """The metric part of metrics.json (provenance is added by the caller).

    thresholds: from VALIDATION (thresholds_from_validation); None leaves threshold,
    sensitivity and specificity null rather than tuning them on the scored split."""
    aucs = m.per_finding_auc(y, prob)
    macro, included = m.macro_auc(aucs)
    cis = (auc_confidence_intervals(y, prob, patients, included, n_bootstrap, seed)
           if n_bootstrap > 0 else None)
    per_finding = {}
    for k, name in enumerate(FINDINGS):
        thr = float(thresholds[k]) if thresholds is not None else float("nan")
        sens, spec = m.sens_spec(y[:, k], prob[:, k], thr)
        per_finding[name] = {
            "auc": aucs[k], "auc_ci": cis["per_finding"][k] if cis else None,
            "ap": m.average_precision(y[:, k], prob[:, k]), "ece": m.ece(y[:, k], prob[:, k]),
            "brier": m.brier(y[:, k], prob[:, k]), "threshold": thr, "sensitivity": sens,
            "specificity": spec, "n_pos": int(y[:, k].sum())}
    out = {"per_finding": per_finding, "macro_auc": macro,
           "macro_auc_ci": cis["macro"] if cis else None, "micro_auc": m.micro_auc(y, prob),
           "excluded_findings": [FINDINGS[k] for k in np.flatnonzero(~included)],
           "bootstrap": {k: cis[k] for k in ("n_resamples", "seed", "unit")} if cis else None,
           "thresholds_from": "validation" if thresholds is not None else None,
           "n_images": int(len(y)), "n_patients": int(len(np.unique(patients)))}
    if std is not None:
        out["selective"] = selective_macro_auc(y, prob, std, findings=FINDINGS,
                                               rule=uncertainty_rule)
        out["referral_rate_at_threshold"] = referral_rate(std, std_threshold, uncertainty_rule)
        out["std_threshold"] = std_threshold
        out["uncertainty_rule"] = uncertainty_rule
    else:  # external predictions without std_ columns: nothing to refer on
        out["selective"] = out["referral_rate_at_threshold"] = out["uncertainty_rule"] = None
    return out


def write_outputs(out_dir: str | Path, metrics: dict, y: np.ndarray, prob: np.ndarray,
                  predictions: pd.DataFrame | None = None) -> Path:
    """Write metrics.json, roc.csv, calibration.csv (and predictions.csv if given) to out_dir."""
    out = EvalDir(out_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    if predictions is not None:
        write_csv(predictions, out.predictions)
    write_csv(m.roc_table(y, prob, FINDINGS), out.roc)
    write_csv(m.calibration_table(y, prob, FINDINGS), out.calibration)
    write_json(out.metrics, metrics)
    return out.path
