"""pages/3_Evaluate.py: Table 2 with CIs and the best model highlighted, the comparison plots,
and evaluating a run that has none yet as a background job."""
from __future__ import annotations

import time

import numpy as np

from apptest_util import button, no_exception

from cxr.dashboard import jobs
from cxr.labels import FINDINGS

PAGE = "pages/3_Evaluate.py"


def test_nothing_evaluated_yet(app, empty_world):
    at = app(empty_world, PAGE)
    no_exception(at)
    assert any("No evaluated run yet" in i.value for i in at.info)


def test_table2_and_plots_for_two_models(app, fresh_world):
    import dashboard_env
    dashboard_env.write_run(fresh_world.runs / "tiny-cnn", "simple_cnn", val_auc=0.55)
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert sorted(at.multiselect(key="compare").value) == ["tiny-cnn", "tiny-fusion"]
    table = at.dataframe[0].value
    assert list(table.index) == [*FINDINGS, "Macro AUC"]
    assert sorted(table.columns) == ["tiny-cnn", "tiny-fusion"]
    assert table.loc["Macro AUC"].str.match(r"^0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]$").all()
    # macro bars, selective prediction, ROC, loss, val AUC, calibration
    assert len(at.get("plotly_chart")) == 6
    at.selectbox(key="roc_finding").set_value("Mass")
    at.selectbox(key="cal_finding").set_value("Mass")
    at.run()
    no_exception(at)
    assert any(c.value.startswith("ECE: ") for c in at.caption)
    at.multiselect(key="compare").set_value(["tiny-cnn"])
    at.run()
    assert list(at.dataframe[0].value.columns) == ["tiny-cnn"]


def test_reliability_before_and_after_calibration_when_a_run_has_a_readout(app, fresh_world):
    import json

    from cxr.evaluation.metrics import calibration_table
    from cxr.rundir import RunDir
    at = app(fresh_world, PAGE)
    assert any(c.value.startswith("No calibrated reliability curve") for c in at.caption)
    run = RunDir(fresh_world.runs / "tiny-fusion")
    metrics = json.loads(run.eval.metrics.read_text())
    metrics["readout"] = {"available": True, "calibration": {
        "macro": {"ece_before": 0.21, "ece_after": 0.04}, "per_finding": {}},
        "ood": {"expected_flag_rate": 0.0459, "flag_rate_interval": [0.022, 0.078],
                "flag_rate": 0.05, "flag_rate_ci": [0.02, 0.1], "n_flagged": 5, "n_images": 100,
                "within_promise": True, "threshold_method": "conformal", "n_calibration": 216},
        "targets_held": {p: {"findings": 14, "target_met_on_val": 10,
                             "held_on_scored_split": 9, "held_where_met_on_val": 8}
                         for p in ("sensitivity", "specificity")}}
    run.eval.metrics.write_text(json.dumps(metrics))
    y = np.tile([0, 1], (20, 7))
    run.eval.calibrated.parent.mkdir(exist_ok=True)
    calibration_table(y, np.full(y.shape, 0.5), FINDINGS).to_csv(run.eval.calibrated, index=False)
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert len(at.get("plotly_chart")) == 7  # the six above + before / after calibration
    assert any("tiny-fusion 0.210 → 0.040" in c.value for c in at.caption)
    ood = at.dataframe[-1].value.set_index("model")  # the last table: the OOD guard
    assert ood.loc["tiny-fusion", "expected"] == "4.6% (2.2%-7.8%)"
    assert ood.loc["tiny-fusion", "observed"] == "5.0% (2.0%-10.0%)"
    assert any("tiny-fusion: target held for sensitivity on 9 of 14 findings" in c.value
               for c in at.caption)


def test_best_per_finding_is_highlighted(fresh_world):
    import dashboard_env
    from cxr.dashboard.evaluations import Evaluation, best_per_row, table2
    dashboard_env.write_run(fresh_world.runs / "tiny-cnn", "simple_cnn")
    evals = [Evaluation.load(fresh_world.runs / n, n) for n in ("tiny-fusion", "tiny-cnn")]
    auc, cis = table2(evals)
    best = best_per_row(auc)
    for finding in FINDINGS:
        assert auc.loc[finding, best[finding]] == auc.loc[finding].max()
    assert cis.loc["Macro AUC", "tiny-cnn"].startswith("[")


def test_evaluating_an_unevaluated_run_is_a_background_job(app, fresh_world):
    import dashboard_env
    run = dashboard_env.write_run(fresh_world.runs / "fresh", "simple_cnn", evaluate=False)
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert at.selectbox(key="eval_pick").value == "fresh"
    button(at, "Evaluate on its test split").click()
    at.run()
    no_exception(at)
    assert jobs.read_job(run, "evaluate")["argv"] == jobs.evaluate_args(run)
    # This run has no split.csv (the fixture wrote no training data), so `cxr evaluate`
    # fails: the page must say so with the job's own message.
    deadline = time.time() + 180
    while jobs.exit_code(run, "evaluate") is None and time.time() < deadline:
        time.sleep(0.5)
    assert jobs.exit_code(run, "evaluate") == 1
    at.run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("Evaluating `fresh` failed (exit status 1)" in e for e in errors), errors
