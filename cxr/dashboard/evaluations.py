"""An evaluated run's `eval/` folder (written by `cxr evaluate`) shaped for the Evaluate page.

`metrics.json` holds per-finding AUC with patient-bootstrap CIs, macro AUC, selective
prediction and provenance (split, seed, data version); `roc.csv` and `calibration.csv` are long
tables with a `finding` column. See cxr/evaluation/scoring.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.evaluation.compare import auc_table
from cxr.labels import FINDINGS
from cxr.rundir import RunDir, read_json


@dataclass
class Evaluation:
    name: str           # the run's name, used as the model's column/legend label
    run: RunDir         # its eval/ holds what is shown
    metrics: dict

    @classmethod
    def load(cls, run_dir: Path, name: str | None = None) -> "Evaluation":
        run = RunDir(run_dir)
        metrics = read_json(run.eval.metrics)
        if not metrics:
            raise FileNotFoundError(f"{run.eval.metrics} is missing or unreadable; "
                                    f"run `cxr evaluate --checkpoint {run.best}`")
        return cls(name or run.path.name, run, metrics)

    def _csv(self, path: Path) -> pd.DataFrame:
        try:
            return pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return pd.DataFrame()

    def roc(self) -> pd.DataFrame:
        return self._csv(self.run.eval.roc)

    def calibration(self) -> pd.DataFrame:
        return self._csv(self.run.eval.calibration)

    def calibrated(self) -> pd.DataFrame:
        """The reliability table after the readout's calibration; empty without a readout."""
        return self._csv(self.run.eval.calibrated)

    def ece_before_after(self, finding: str | None) -> tuple[float, float]:
        """ECE of one finding (None: the macro over the 14) before and after the readout's
        calibration, on the scored split; NaN without a readout."""
        cal = (self.metrics.get("readout") or {}).get("calibration") or {}
        part = cal.get("macro") if finding is None else cal.get("per_finding", {}).get(finding)
        part = part or {}
        return _num(part.get("ece_before")), _num(part.get("ece_after"))

    def ood(self) -> dict:
        """The OOD guard on the scored split as one table row: expected flag rate (and its
        promised 95% interval), observed rate (and its exact 95% CI), flagged / films, and
        whether the count lies in the range the promise gives for that many films."""
        o = (self.metrics.get("readout") or {}).get("ood")
        if not o:
            return {"model": self.name, "expected": "no readout", "observed": "",
                    "flagged": "", "within promise": "", "threshold from": ""}
        promise = o.get("flag_rate_interval")
        expected = _pct(o.get("expected_flag_rate"))
        expected += (f" ({_pct(promise[0])}-{_pct(promise[1])})" if promise
                     else " (no interval: older readout)")
        ci = o.get("flag_rate_ci")
        observed = _pct(o.get("flag_rate")) + (f" ({_pct(ci[0])}-{_pct(ci[1])})" if ci else "")
        within = o.get("within_promise")
        return {"model": self.name, "expected": expected, "observed": observed,
                "flagged": f"{o.get('n_flagged')} / {o.get('n_images')}",
                "within promise": "n/a" if within is None else ("yes" if within else "NO"),
                "threshold from": f"{o.get('threshold_method', 'quantile')} on "
                                  f"{o.get('n_calibration') or '?'} films"}

    def targets_held(self) -> str:
        """One sentence: on how many findings each targeted operating point's 0.90 held on
        the scored split ('' without a readout or from a metrics.json before it)."""
        held = (self.metrics.get("readout") or {}).get("targets_held")
        if not held:
            return ""
        parts = []
        for point in ("sensitivity", "specificity"):
            h = held.get(point) or {}
            met = h.get("target_met_on_val")
            parts.append(f"{point} on {h.get('held_on_scored_split')} of {h.get('findings')} "
                         "findings" + ("" if met is None else
                                       f" ({h.get('held_where_met_on_val')} of the {met} whose "
                                       "target held with 95% confidence on validation)"))
        return f"{self.name}: target held for " + "; ".join(parts)

    def auc(self, finding: str) -> float:
        return _num(self.metrics.get("per_finding", {}).get(finding, {}).get("auc"))

    def auc_ci(self, finding: str) -> tuple[float, float]:
        return _ci(self.metrics.get("per_finding", {}).get(finding, {}).get("auc_ci"))

    @property
    def macro(self) -> float:
        return _num(self.metrics.get("macro_auc"))

    @property
    def macro_ci(self) -> tuple[float, float]:
        return _ci(self.metrics.get("macro_auc_ci"))

    def provenance(self) -> str:
        m = self.metrics
        model = m.get("model")
        model = model.get("name") if isinstance(model, dict) else model
        parts = [f"model {model}" if model else None,
                 f"split {m.get('split')} ({m.get('strategy') or 'n/a'}, seed {m.get('seed')})",
                 f"data {m.get('data_version') or 'n/a'}",
                 f"{m.get('n_images', '?')} images / {m.get('n_patients', '?')} patients",
                 f"{m.get('passes')} MC passes" if m.get("passes") else None,
                 f"uncertainty rule {m['uncertainty_rule']}" if m.get("uncertainty_rule")
                 else None]
        return ", ".join(p for p in parts if p)

    def selective(self) -> pd.DataFrame:
        sel = self.metrics.get("selective") or {}
        rows = [{"referral_rate": _num(v.get("referred_fraction", k)),
                 "macro_auc": _num(v.get("macro_auc")), "n_kept": v.get("n_kept")}
                for k, v in sel.items() if isinstance(v, dict)]
        return pd.DataFrame(rows, columns=["referral_rate", "macro_auc", "n_kept"]) \
            .sort_values("referral_rate", ignore_index=True)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _pct(x) -> str:
    x = _num(x)
    return "n/a" if np.isnan(x) else f"{x:.1%}"


def ood_table(evals: list["Evaluation"]) -> pd.DataFrame:
    """One row per evaluation (Evaluation.ood): the Evaluate page's OOD table."""
    return pd.DataFrame([e.ood() for e in evals])


def _ci(ci) -> tuple[float, float]:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return _num(ci[0]), _num(ci[1])
    return float("nan"), float("nan")


def table2(evals: list[Evaluation]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2 (`cxr.evaluation.compare.auc_table`: findings x models, macro row last) and the
    same shape of '[lo, hi]' CI text."""
    auc = auc_table({e.name: e.metrics for e in evals})
    cis = pd.DataFrame({e.name: [_ci_text(*e.auc_ci(f)) for f in FINDINGS] + [_ci_text(*e.macro_ci)]
                        for e in evals}, index=auc.index)
    return auc, cis


def _ci_text(lo: float, hi: float) -> str:
    return "" if np.isnan(lo) or np.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"


def table_with_cis(auc: pd.DataFrame, cis: pd.DataFrame) -> pd.DataFrame:
    """One text table: 'AUC [lo, hi]' per cell, for display and download."""
    out = auc.copy().astype(object)
    for col in auc.columns:
        out[col] = [("" if np.isnan(a) else f"{a:.3f}") + (f" {c}" if c else "")
                    for a, c in zip(auc[col], cis[col])]
    return out


def best_per_row(auc: pd.DataFrame) -> pd.Series:
    """The model with the highest AUC per finding (NaN rows: None)."""
    return pd.Series({name: (row.idxmax() if row.notna().any() else None)
                      for name, row in auc.iterrows()}, dtype=object)
