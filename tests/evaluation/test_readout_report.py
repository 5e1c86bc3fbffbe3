"""cxr/evaluation/readout_report.py: `cxr evaluate --checkpoint` reports the readout (ECE and
Brier before/after, operating points with CIs, OOD flag rate) or says there is none."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import numpy as np
import pytest

from cxr.cli import main
from cxr.labels import FINDINGS
from cxr.rundir import RunDir


@pytest.fixture
def run(tiny_run, tmp_path):
    src, _, _ = tiny_run
    shutil.copytree(src, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "*.readout.pt"))
    return RunDir(tmp_path / "run")


def _evaluate(run, *more):
    return main(["evaluate", "--checkpoint", str(run.best), "--passes", "3", "--batch-size", "8",
                 "--bootstrap", "30", *more])


def test_without_a_readout_metrics_say_none_is_available(run, capsys):
    run.eval.path.mkdir(parents=True)
    run.eval.calibrated.write_text("stale\n")  # from an evaluation when a readout existed
    assert _evaluate(run) == 0
    section = json.loads(run.eval.metrics.read_text())["readout"]
    assert section["available"] is False
    assert "no calibration / operating points / OOD guard available" in section["note"]
    assert "no calibration / operating points / OOD guard" in capsys.readouterr().out
    assert not run.eval.calibrated.exists()


def test_with_a_readout_every_part_is_reported_on_the_scored_split(run):
    assert main(["calibrate", "--checkpoint", str(run.best), "--passes", "3"]) == 0
    assert _evaluate(run) == 0
    metrics = json.loads(run.eval.metrics.read_text())
    section = metrics["readout"]
    assert section["available"] is True and section["fitted_on_scored_split"] is False
    cal = section["calibration"]
    assert cal["method"] == "temperature" and set(cal["per_finding"]) == set(FINDINGS)
    for f in FINDINGS:  # "before" is exactly what the rest of metrics.json reports
        assert cal["per_finding"][f]["ece_before"] == metrics["per_finding"][f]["ece"]
        assert cal["per_finding"][f]["brier_before"] == metrics["per_finding"][f]["brier"]
    assert set(cal["macro"]) == {"ece_before", "ece_after", "brier_before", "brier_after"}
    points = section["operating_points"]
    assert points["target"] == 0.9
    for point in ("youden", "sensitivity", "specificity"):
        for f in FINDINGS:
            row = points[point][f]
            assert {"threshold", "val_sensitivity", "val_specificity", "sensitivity",
                    "specificity", "ppv", "npv", "sensitivity_ci", "npv_ci",
                    "n_called_positive"} <= set(row)
            if row["threshold"] is not None and point == "sensitivity":
                assert row["val_sensitivity"] >= 0.9
    held = section["targets_held"]
    for point in ("sensitivity", "specificity"):
        rows = [r for r in points[point].values() if r["threshold"] is not None
                and r[point] is not None]
        assert held[point]["findings"] == len(rows)
        assert held[point]["held_on_scored_split"] == sum(r[point] >= 0.9 for r in rows)
        assert held[point]["target_met_on_val"] == sum(r["target_met"] for r in rows)
        assert held[point]["held_where_met_on_val"] == \
            sum(r[point] >= 0.9 for r in rows if r["target_met"])
    ood = section["ood"]
    assert ood["n_images"] == metrics["n_images"] == 12 and 0 <= ood["flag_rate"] <= 1
    assert ood["flag_rate"] == pytest.approx(ood["n_flagged"] / 12)
    # the conformal promise: (n + 1 - k) / (n + 1) of in-distribution films, with its interval
    n = ood["n_calibration"]
    k = int(np.ceil((n + 1) * 0.95))
    assert ood["threshold_method"] == "conformal" and n >= 12
    assert ood["expected_flag_rate"] == pytest.approx((n + 1 - k) / (n + 1))
    lo, hi = ood["flag_rate_interval"]
    assert lo < ood["expected_flag_rate"] < hi
    # what it did on the 12 test films, with an exact interval and the promise's range
    from scipy.stats import binomtest
    ci = binomtest(ood["n_flagged"], 12).proportion_ci(0.95, "exact")
    assert ood["flag_rate_ci"] == [pytest.approx(ci.low), pytest.approx(ci.high)]
    low, high = ood["expected_flagged_range"]
    assert 0 <= low <= high <= 12 and ood["within_promise"] == (low <= ood["n_flagged"] <= high)
    after = pd.read_csv(run.eval.calibrated)
    assert list(after.columns) == list(pd.read_csv(run.eval.calibration).columns)
    assert after.groupby("finding")["count"].sum().eq(12).all()


def test_predictions_carry_the_calls_and_ood_flags_the_section_counts(run):
    from cxr.evaluation.predictions import read_predictions
    from cxr.readout import load_readout
    assert main(["calibrate", "--checkpoint", str(run.best), "--passes", "3"]) == 0
    assert _evaluate(run, "--operating-point", "sensitivity") == 0
    section = json.loads(run.eval.metrics.read_text())["readout"]
    preds = read_predictions(run.eval.predictions)
    r = preds.readout
    assert r.operating_point == section["predictions_operating_point"] == "sensitivity"
    assert int(r.ood.sum()) == section["ood"]["n_flagged"]
    assert (r.ood == (r.ood_score > load_readout(run.best).ood.threshold)).all()
    # the calls are the section's "called positive" (calibrated mean >= t) unless the MC
    # passes straddle t (uncertain)
    for k, f in enumerate(FINDINGS):
        row = section["operating_points"]["sensitivity"][f]
        if row["threshold"] is None:
            assert (r.calls[:, k] == "n/a").all()
            continue
        assert ((r.calls[:, k] == "positive") <= (r.calibrated[:, k] >= row["threshold"])).all()
        assert (r.calls[:, k] == "positive").sum() <= row["n_called_positive"]
    # and without a readout the columns are absent
    run.readout.unlink()
    assert _evaluate(run) == 0
    assert read_predictions(run.eval.predictions).readout is None
    assert "call_Effusion" not in pd.read_csv(run.eval.predictions).columns


def test_scoring_the_validation_split_says_it_is_in_sample(run):
    assert main(["calibrate", "--checkpoint", str(run.best), "--passes", "3"]) == 0
    assert _evaluate(run, "--split", "val", "--bootstrap", "0") == 0
    section = json.loads(run.eval.metrics.read_text())["readout"]
    assert section["fitted_on_scored_split"] is True
    assert section["operating_points"]["youden"]["Effusion"]["sensitivity_ci"] is None


def test_a_readout_of_another_checkpoint_stops_the_evaluation(run, capsys):
    assert main(["calibrate", "--checkpoint", str(run.best), "--passes", "3"]) == 0
    with open(run.best, "ab") as f:  # the checkpoint changed after calibration
        f.write(b"\0")
    assert _evaluate(run) == 1
    err = capsys.readouterr().err
    assert "was fitted for checkpoint sha256" in err and "cxr calibrate --checkpoint" in err
