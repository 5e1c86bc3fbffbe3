"""cxr/evaluation/operating_points.py: points chosen on validation hit their targets with 95%
confidence (and hold on new films more often than the point-estimate rule), and the scored
split's sensitivity, specificity, PPV and NPV with patient-bootstrap CIs."""
from __future__ import annotations

import numpy as np
import pytest

from cxr.evaluation.intervals import clopper_pearson, lower_bound
from cxr.evaluation.metrics import sens_spec, youden_threshold
from cxr.evaluation.operating_points import (POINTS, TARGET, choose_points, point_metrics,
                                             threshold_for, thresholds)
from cxr.labels import FINDINGS


@pytest.fixture
def val(synthetic_labels, correlated_scores):
    _, _, y = synthetic_labels
    return y, correlated_scores(y, np.random.default_rng(1), strength=0.3)


def test_points_hit_their_validation_targets_with_confidence(val):
    y, p = val
    points = choose_points(y, p, FINDINGS)
    assert set(points) == set(POINTS)
    for k, f in enumerate(FINDINGS):
        sens_pt, spec_pt = points["sensitivity"][f], points["specificity"][f]
        assert sens_pt["target_met"] and spec_pt["target_met"], (sens_pt, spec_pt)
        # the lower bound meets the target, so the point estimate is above it
        assert sens_pt["val_sensitivity_lcb"] >= TARGET and spec_pt["val_specificity_lcb"] >= TARGET
        assert sens_pt["val_sensitivity"] > TARGET and spec_pt["val_specificity"] > TARGET
        for pt in points.values():  # stored rates are the rates at the stored threshold
            assert (pt[f]["val_sensitivity"], pt[f]["val_specificity"]) == \
                sens_spec(y[:, k], p[:, k], pt[f]["threshold"])
            lo, hi = pt[f]["val_sensitivity_ci"]
            assert lo <= pt[f]["val_sensitivity"] <= hi
        assert points["youden"][f]["threshold"] == youden_threshold(y[:, k], p[:, k])
        assert "target_met" not in points["youden"][f]
        # the best such thresholds: one step further breaks the lower bound
        pos, neg = y[:, k] == 1, y[:, k] == 0
        above = p[:, k][p[:, k] > sens_pt["threshold"]]
        if above.size:
            tp = int((p[:, k][pos] >= above.min()).sum())
            assert lower_bound(tp, int(pos.sum())) < TARGET
        below = p[:, k][p[:, k] < spec_pt["threshold"]]
        if below.size:
            tn = int((p[:, k][neg] < below.max()).sum())
            assert lower_bound(tn, int(neg.sum())) < TARGET


def test_lower_bound_is_scipys_exact_binomial_bound():
    from scipy.stats import beta, binomtest
    for k, n in ((27, 30), (29, 29), (0, 12), (180, 200), (1, 1)):
        lcb = lower_bound(k, n)
        # one-sided 95% = the lower end of the two-sided 90% exact (Clopper-Pearson) interval
        assert lcb == pytest.approx(binomtest(k, n).proportion_ci(0.90, "exact").low, abs=1e-12)
        assert lcb == (0.0 if k == 0 else pytest.approx(beta.ppf(0.05, k, n - k + 1), abs=1e-12))
        lo, hi = clopper_pearson(k, n)
        ci = binomtest(k, n).proportion_ci(0.95, "exact")
        assert (lo, hi) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    # 29 positives all called is the fewest that can put the bound at 0.90
    assert lower_bound(28, 28) < TARGET <= lower_bound(29, 29)


def test_too_few_positives_fall_back_to_the_most_sensitive_threshold_and_say_so():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(12), np.zeros(200)].astype(np.uint8)
    p = np.r_[rng.normal(2, 1, 12), rng.normal(0, 1, 200)]
    pt = choose_points(y[:, None], p[:, None], ["Hernia"])["sensitivity"]["Hernia"]
    assert pt["target_met"] is False and "12 validation positives" in pt["note"]
    assert pt["threshold"] == p[:12].min() and pt["val_sensitivity"] == 1.0
    assert pt["val_sensitivity_lcb"] == pytest.approx(0.05 ** (1 / 12))
    assert pt["n_val_positive"] == 12


def _point_estimate_rule(y, p, target=TARGET):
    """The rule before: the highest threshold whose validation sensitivity is >= target."""
    pos = np.sort(p[y == 1])[::-1]
    return pos[int(np.ceil(target * len(pos))) - 1]


def test_the_lower_bound_rule_holds_on_new_films_where_the_point_estimate_does_not():
    """Simulated finding: positives N(1.5, 1), negatives N(0, 1), 80 validation positives;
    each draw's threshold is scored on 4,000 fresh positives (its true sensitivity)."""
    rng = np.random.default_rng(2026)
    met_new = met_old = 0
    draws = 200
    for _ in range(draws):
        y = np.r_[np.ones(80), np.zeros(320)].astype(np.uint8)
        p = np.r_[rng.normal(1.5, 1, 80), rng.normal(0, 1, 320)]
        fresh = rng.normal(1.5, 1, 4000)
        t_new = threshold_for(y, p, "sensitivity")
        met_new += (fresh >= t_new).mean() >= TARGET
        met_old += (fresh >= _point_estimate_rule(y, p)).mean() >= TARGET
    new, old = met_new / draws, met_old / draws
    message = f"test sensitivity >= {TARGET}: lower-bound rule {new:.1%}, point estimate {old:.1%}"
    assert new >= 0.90 and new > old + 0.2, message


def test_one_class_has_no_point_and_all_tied_negatives_call_nothing():
    y = np.array([0, 0, 0, 1])
    assert np.isnan(threshold_for(y * 0, np.linspace(0, 1, 4), "youden"))
    p = np.array([0.9, 0.9, 0.9, 0.9])  # every film tied: no finite threshold keeps spec 0.9
    t = threshold_for(y, p, "specificity")
    assert t > 0.9 and sens_spec(y, p, t) == (0.0, 1.0)
    pt = choose_points(y[:, None], p[:, None], ["Mass"])["specificity"]["Mass"]
    assert pt["target_met"] is False and "3 validation negatives" in pt["note"]
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
