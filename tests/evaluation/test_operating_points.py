"""cxr/evaluation/operating_points.py: points chosen on validation hit their targets, and the
scored split's sensitivity, specificity, PPV and NPV with patient-bootstrap CIs."""
from __future__ import annotations

import numpy as np
import pytest

from cxr.evaluation.metrics import sens_spec, youden_threshold
from cxr.evaluation.operating_points import (POINTS, TARGET, choose_points, point_metrics,
                                             threshold_for, thresholds)
from cxr.labels import FINDINGS


@pytest.fixture
def val(synthetic_labels, correlated_scores):
    _, _, y = synthetic_labels
    return y, correlated_scores(y, np.random.default_rng(1), strength=0.3)


def test_points_hit_their_validation_targets(val):
    y, p = val
    points = choose_points(y, p, FINDINGS)
    assert set(points) == set(POINTS)
    for k, f in enumerate(FINDINGS):
        sens_pt, spec_pt = points["sensitivity"][f], points["specificity"][f]
        assert sens_pt["val_sensitivity"] >= TARGET and spec_pt["val_specificity"] >= TARGET
        for pt in points.values():  # stored rates are the rates at the stored threshold
            assert (pt[f]["val_sensitivity"], pt[f]["val_specificity"]) == \
                sens_spec(y[:, k], p[:, k], pt[f]["threshold"])
        assert points["youden"][f]["threshold"] == youden_threshold(y[:, k], p[:, k])
        # the best such thresholds: one step further breaks the target
        above = p[:, k][p[:, k] > sens_pt["threshold"]]
        if above.size:
            assert sens_spec(y[:, k], p[:, k], above.min())[0] < TARGET
        below = p[:, k][p[:, k] < spec_pt["threshold"]]
        if below.size:
            assert sens_spec(y[:, k], p[:, k], below.max())[1] < TARGET


def test_one_class_has_no_point_and_all_tied_negatives_call_nothing():
    y = np.array([0, 0, 0, 1])
    assert np.isnan(threshold_for(y * 0, np.linspace(0, 1, 4), "youden"))
    p = np.array([0.9, 0.9, 0.9, 0.9])  # every film tied: no finite threshold keeps spec 0.9
    t = threshold_for(y, p, "specificity")
    assert t > 0.9 and sens_spec(y, p, t) == (0.0, 1.0)
    with pytest.raises(ValueError, match="operating point 'f1'"):
        threshold_for(y, p, "f1")


def test_point_metrics_on_a_scored_split_with_patient_bootstrap(val, synthetic_labels,
                                                                 correlated_scores):
    y_val, p_val = val
    _, patients, _ = synthetic_labels
    rng = np.random.default_rng(5)
    y = (rng.random(y_val.shape) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = correlated_scores(y, rng, strength=0.3)
    points = choose_points(y_val, p_val, FINDINGS)
    out = point_metrics(y, p, patients, points, FINDINGS, n_bootstrap=200, seed=0)
    for point in POINTS:
        t = thresholds(points, point, FINDINGS)
        for k, f in enumerate(FINDINGS):
            row = out[point][f]
            called, pos = p[:, k] >= t[k], y[:, k].astype(bool)
            assert (row["sensitivity"], row["specificity"]) == sens_spec(y[:, k], p[:, k], t[k])
            assert row["ppv"] == pytest.approx((called & pos).sum() / called.sum())
            assert row["npv"] == pytest.approx((~called & ~pos).sum() / (~called).sum())
            assert row["n_called_positive"] == called.sum()
            assert row["val_sensitivity"] == points[point][f]["val_sensitivity"]
            for rate in ("sensitivity", "specificity", "ppv", "npv"):
                lo, hi = row[f"{rate}_ci"]
                assert lo <= hi and lo <= row[rate] + 0.05 and row[rate] - 0.05 <= hi
    again = point_metrics(y, p, patients, points, FINDINGS, n_bootstrap=200, seed=0)
    assert again == out  # seeded
    no_ci = point_metrics(y, p, patients, points, FINDINGS, n_bootstrap=0)
    assert no_ci["youden"][FINDINGS[0]]["sensitivity_ci"] is None


def test_a_finding_without_a_point_scores_nan(val, synthetic_labels):
    y_val, p_val = val
    _, patients, _ = synthetic_labels
    y_val = y_val.copy()
    y_val[:, 2] = 0  # Effusion: no positive on validation, so no point
    points = choose_points(y_val, p_val, FINDINGS)
    assert np.isnan(points["youden"]["Effusion"]["threshold"])
    out = point_metrics(y_val, p_val, patients, points, FINDINGS, n_bootstrap=20)
    assert np.isnan(out["youden"]["Effusion"]["sensitivity"])
    assert out["youden"]["Effusion"]["sensitivity_ci"] is None
    assert out["youden"]["Effusion"]["n_called_positive"] == 0
