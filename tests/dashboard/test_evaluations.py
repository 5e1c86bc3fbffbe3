"""cxr/dashboard/evaluations.py: Table 2 and an eval folder feeding the comparison figures
(the figures themselves: test_charts.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
import dashboard_env  # noqa: E402

from cxr.dashboard import charts  # noqa: E402
from cxr.dashboard.evaluations import Evaluation, best_per_row, table2, table_with_cis  # noqa: E402
from cxr.evaluation.compare import MACRO_ROW as MACRO  # noqa: E402
from cxr.labels import FINDINGS  # noqa: E402


def fake_eval(tmp_path, name, aucs, macro, selective=None):
    ev = tmp_path / name / "eval"
    ev.mkdir(parents=True)
    per = {f: {"auc": a, "auc_ci": None if a is None else [a - 0.05, a + 0.05]}
           for f, a in zip(FINDINGS, aucs)}
    (ev / "metrics.json").write_text(json.dumps({
        "per_finding": per, "macro_auc": macro, "macro_auc_ci": [macro - 0.02, macro + 0.02],
        "split": "test", "strategy": "patient", "seed": 0, "data_version": "v1",
        "n_images": 10, "n_patients": 5, "model": {"name": name}, "passes": 25,
        "selective": selective or {}}))
    return Evaluation.load(tmp_path / name, name)


def test_table2_best_per_finding_and_cis(tmp_path):
    a = fake_eval(tmp_path, "a", [0.7] * 13 + [None], 0.7)
    b = fake_eval(tmp_path, "b", [0.8] + [0.6] * 12 + [None], 0.62)
    auc, cis = table2([a, b])
    assert list(auc.index) == [*FINDINGS, MACRO] and list(auc.columns) == ["a", "b"]
    best = best_per_row(auc)
    assert best["Atelectasis"] == "b" and best["Cardiomegaly"] == "a" and best[MACRO] == "a"
    assert best["Hernia"] is None  # no AUC anywhere: nothing highlighted
    text = table_with_cis(auc, cis)
    assert text.loc["Atelectasis", "b"] == "0.800 [0.750, 0.850]"
    assert text.loc["Hernia", "a"] == ""
    assert "split test (patient, seed 0)" in a.provenance()
    assert "uncertainty rule" not in a.provenance()  # an evaluation from before rules existed
    a.metrics["uncertainty_rule"] = "mean"
    assert a.provenance().endswith("25 MC passes, uncertainty rule mean")


def test_missing_evaluation_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cxr evaluate --checkpoint"):
        Evaluation.load(tmp_path / "none")


def test_selective_table_sorted_by_referral(tmp_path):
    e = fake_eval(tmp_path, "a", [0.7] * 14, 0.7, selective={
        "0.2": {"referred_fraction": 0.2, "macro_auc": 0.75, "n_kept": 8},
        "0.0": {"referred_fraction": 0.0, "macro_auc": 0.7, "n_kept": 10}})
    sel = e.selective()
    assert sel["referral_rate"].tolist() == [0.0, 0.2] and sel["macro_auc"].tolist() == [0.7, 0.75]


def test_real_eval_outputs_feed_every_figure(tmp_path):
    run = dashboard_env.write_run(tmp_path / "run", "simple_cnn")
    e = Evaluation.load(run)
    roc = e.roc()
    assert set(roc.columns) >= {"finding", "fpr", "tpr"} and set(roc["finding"]) == set(FINDINGS)
    fig = charts.roc_figure({"run": (roc[roc["finding"] == "Mass"], e.auc("Mass"))}, "Mass")
    assert fig.data[0].name.startswith("run (AUC ") and len(fig.data) == 2  # + chance line
    cal = charts.calibration_figure({"run": e.calibration()}, None)
    pooled = cal.data[0]
    assert np.all((np.array(pooled.x) >= 0) & (np.array(pooled.x) <= 1))
    assert len(charts.selective_figure({"run": e.selective()}).data) == 1
    bars = charts.macro_auc_bars(["run"], [e.macro], [e.macro_ci[0]], [e.macro_ci[1]])
    assert bars.data[0].error_y.array[0] == pytest.approx(e.macro_ci[1] - e.macro)


def test_calibrated_table_and_ece_before_after_come_from_the_readout(tmp_path):
    e = fake_eval(tmp_path, "a", [0.7] * 14, 0.7)
    assert e.calibrated().empty and np.isnan(e.ece_before_after("Mass")).all()
    e.metrics["readout"] = {"available": True, "calibration": {
        "macro": {"ece_before": 0.2, "ece_after": 0.05},
        "per_finding": {"Mass": {"ece_before": 0.3, "ece_after": 0.1}}}}
    assert e.ece_before_after(None) == (0.2, 0.05) and e.ece_before_after("Mass") == (0.3, 0.1)
    assert np.isnan(e.ece_before_after("Edema")).all()
    e.run.eval.calibrated.write_text("finding,bin,mean_predicted,observed_frequency,count\n"
                                     "Mass,3,0.2,0.25,4\n")
    assert e.calibrated()["count"].tolist() == [4]


def test_ood_row_shows_the_promise_and_the_observed_rate_with_their_intervals(tmp_path):
    from cxr.dashboard.evaluations import ood_table
    from cxr.evaluation.ood import fit_ood, ood_score
    from cxr.evaluation.readout_report import ood_section
    rng = np.random.default_rng(0)
    ood = fit_ood(rng.normal(size=(400, 8)), rng.normal(size=(100, 8)), 0.95)
    score = ood_score(rng.normal(size=(200, 8)), ood.mean, ood.precision)
    section = ood_section(ood, score, score > ood.threshold)
    e = fake_eval(tmp_path, "a", [0.7] * 14, 0.7)
    assert e.ood()["expected"] == "no readout"
    e.metrics["readout"] = {"available": True, "ood": json.loads(json.dumps(section))}
    row = e.ood()
    lo, hi = section["flag_rate_interval"]
    assert row["expected"] == f"{section['expected_flag_rate']:.1%} ({lo:.1%}-{hi:.1%})"
    clo, chi = section["flag_rate_ci"]
    assert row["observed"] == f"{section['flag_rate']:.1%} ({clo:.1%}-{chi:.1%})"
    assert row["flagged"] == f"{section['n_flagged']} / 200"
    assert row["within promise"] == ("yes" if section["within_promise"] else "NO")
    assert row["threshold from"] == f"conformal on {ood.n_calibration} films"
    old = {"threshold": 3.0, "share": 0.95, "expected_flag_rate": 0.05, "flag_rate": 0.1,
           "n_flagged": 2, "n_images": 20}  # metrics.json before the conformal threshold
    e.metrics["readout"]["ood"] = old
    row = e.ood()
    assert row["expected"] == "5.0% (no interval: older readout)" and row["observed"] == "10.0%"
    assert row["within promise"] == "n/a"
    assert list(ood_table([e]).columns) == ["model", "expected", "observed", "flagged",
                                            "within promise", "threshold from"]


def test_targets_held_says_on_how_many_findings_each_point_held(tmp_path):
    e = fake_eval(tmp_path, "a", [0.7] * 14, 0.7)
    assert e.targets_held() == ""
    e.metrics["readout"] = {"targets_held": {
        "sensitivity": {"findings": 14, "target_met_on_val": 9, "held_on_scored_split": 8,
                        "held_where_met_on_val": 7},
        "specificity": {"findings": 14, "target_met_on_val": None, "held_on_scored_split": 12,
                        "held_where_met_on_val": None}}}
    assert e.targets_held() == (
        "a: target held for sensitivity on 8 of 14 findings (7 of the 9 whose target held "
        "with 95% confidence on validation); specificity on 12 of 14 findings")
