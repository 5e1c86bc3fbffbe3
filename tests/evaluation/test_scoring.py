"""cxr/evaluation/scoring.py: labels for predicted images, the metrics of metrics.json (AUC as
scikit-learn computes it, thresholds only from validation, selective prediction only with std)
and the files `cxr evaluate` writes."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr.evaluation.scoring import labels_for, score, thresholds_from_validation, write_outputs
from cxr.labels import FINDINGS


@pytest.fixture
def scored(synthetic_labels, correlated_scores):
    images, patients, y = synthetic_labels
    prob = correlated_scores(y, np.random.default_rng(0))
    return images, np.asarray(patients), y, prob


def test_labels_follow_the_order_of_the_images(synthetic_labels):
    images, patients, y = synthetic_labels
    table = pd.DataFrame({"image": images, "patient": patients,
                          **{f: y[:, k] for k, f in enumerate(FINDINGS)}})
    asked = [images[5], images[0], images[42]]
    labels, who = labels_for(asked, table, source="p.csv")
    assert np.array_equal(labels, y[[5, 0, 42]])
    assert who.tolist() == [patients[i] for i in (5, 0, 42)]
    with pytest.raises(ValueError, match=r"2 image\(s\) in p.csv have no labels .*first: x.png, "
                                         r"y.png"):
        labels_for([images[0], "y.png", "x.png"], table, source="p.csv")


def test_aucs_are_sklearns_and_single_class_findings_are_excluded(scored):
    images, patients, y, prob = scored
    y = y.copy()
    y[:, FINDINGS.index("Hernia")] = 0  # no positives: no AUC, not counted in the macro
    m = score(y, prob, patients, n_bootstrap=0)
    for k, f in enumerate(FINDINGS[:-1]):
        assert m["per_finding"][f]["auc"] == pytest.approx(roc_auc_score(y[:, k], prob[:, k]))
    assert np.isnan(m["per_finding"]["Hernia"]["auc"]) and m["excluded_findings"] == ["Hernia"]
    assert m["macro_auc"] == pytest.approx(np.mean([m["per_finding"][f]["auc"]
                                                    for f in FINDINGS[:-1]]))
    assert m["macro_auc_ci"] is None and m["bootstrap"] is None
    assert m["n_images"] == len(images) and m["n_patients"] == 100


def test_thresholds_come_only_from_validation(scored):
    _, patients, y, prob = scored
    untuned = score(y, prob, patients, n_bootstrap=0)
    assert untuned["thresholds_from"] is None
    assert all(np.isnan(v["threshold"]) and np.isnan(v["sensitivity"])
               for v in untuned["per_finding"].values())
    val_y, val_p = y[:150], prob[:150]
    thresholds = thresholds_from_validation(val_y, val_p)
    tuned = score(y[150:], prob[150:], patients[150:], thresholds=thresholds, n_bootstrap=0)
    assert tuned["thresholds_from"] == "validation"
    mass = FINDINGS.index("Mass")
    t = tuned["per_finding"]["Mass"]["threshold"]
    assert t == thresholds[mass]
    called = prob[150:, mass] >= t
    truth = y[150:, mass].astype(bool)
    assert tuned["per_finding"]["Mass"]["sensitivity"] == pytest.approx(called[truth].mean())
    one_class = np.zeros_like(val_y)
    assert np.isnan(thresholds_from_validation(one_class, val_p)).all()


def test_selective_prediction_needs_std(scored):
    _, patients, y, prob = scored
    assert score(y, prob, patients, n_bootstrap=0)["selective"] is None
    std = np.random.default_rng(1).random(y.shape) * 0.2
    m = score(y, prob, patients, std=std, n_bootstrap=0, std_threshold=0.15)
    assert set(m["selective"]) == {"0.0", "0.1", "0.2", "0.3"}
    assert m["selective"]["0.3"]["n_kept"] == len(y) - 90
    # the report's rule by default: the mean std over the findings refers and flags
    assert m["uncertainty_rule"] == "mean"
    assert m["referral_rate_at_threshold"] == pytest.approx((std.mean(axis=1) > 0.15).mean())
    assert m["std_threshold"] == 0.15
    by_any = score(y, prob, patients, std=std, n_bootstrap=0, std_threshold=0.15,
                   uncertainty_rule="any")
    assert by_any["uncertainty_rule"] == "any"
    assert by_any["referral_rate_at_threshold"] == pytest.approx((std.max(axis=1) > 0.15).mean())
    assert score(y, prob, patients, n_bootstrap=0)["uncertainty_rule"] is None


def test_bootstrap_cis_bracket_the_auc(scored):
    _, patients, y, prob = scored
    m = score(y, prob, patients, n_bootstrap=30, seed=0)
    lo, hi = m["macro_auc_ci"]
    assert lo <= m["macro_auc"] <= hi and m["bootstrap"]["unit"] == "patient"


def test_write_outputs_is_strict_json_and_csvs(scored, tmp_path):
    images, patients, y, prob = scored
    y = y.copy()
    y[:, -1] = 0  # a NaN AUC to write
    m = score(y, prob, patients, n_bootstrap=0)
    preds = pd.DataFrame({"Image Index": images})
    out = write_outputs(tmp_path / "eval", m, y, prob, preds)
    assert sorted(p.name for p in out.iterdir()) == ["calibration.csv", "metrics.json",
                                                     "predictions.csv", "roc.csv"]
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    back = json.loads(text)
    assert back["per_finding"]["Hernia"]["auc"] is None
    assert back["macro_auc"] == pytest.approx(m["macro_auc"])
    roc = pd.read_csv(out / "roc.csv")
    assert set(roc["finding"]) == set(FINDINGS[:-1])  # no curve without both classes
    assert pd.read_csv(out / "predictions.csv")["Image Index"].tolist() == list(images)
