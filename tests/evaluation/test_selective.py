import numpy as np
import pytest

from cxr.evaluation.metrics import macro_auc, per_finding_auc
from cxr.evaluation.selective import referral_rate, selective_macro_auc


def test_oracle_uncertainty_raises_auc():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 4)) < 0.3).astype(np.uint8)
    p = np.clip(0.2 * y + 0.8 * rng.random(y.shape), 0, 1)
    oracle = np.abs(p - y).mean(axis=1)  # the images the model gets most wrong
    out = selective_macro_auc(y, p, oracle)
    aucs = [out[str(f)]["macro_auc"] for f in (0.0, 0.1, 0.2, 0.3)]
    assert aucs[0] == pytest.approx(macro_auc(per_finding_auc(y, p))[0])
    assert aucs[0] < aucs[1] < aucs[2] < aucs[3]
    assert [out[str(f)]["n_kept"] for f in (0.0, 0.1, 0.2, 0.3)] == [500, 450, 400, 350]
    random = selective_macro_auc(y, p, rng.random(500))["0.3"]["macro_auc"]
    assert aucs[3] - aucs[0] > 3 * abs(random - aucs[0])


def test_per_finding_std_is_scored_by_the_rule_and_referral_rate():
    std = np.array([[0.01, 0.2], [0.05, 0.02], [0.11, 0.0], [0.1, 0.1]])
    assert referral_rate(std, 0.1, rule="any") == 0.5  # rows 0 and 2; 0.1 is not above 0.1
    assert referral_rate(std, 0.1) == 0.25  # the report's mean: row 0 (0.105) only
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    out = selective_macro_auc(y, np.full((4, 2), 0.5), std, fractions=(0.5,),
                              findings=["A", "B"], rule="any")
    assert out["0.5"]["n_kept"] == 2
    assert out["0.5"]["excluded_findings"] == ["A"]  # kept rows 1 and 3: A has no positive
    # by mean std (0.105, 0.035, 0.055, 0.1) rows 0 and 3 are referred: rows 1, 2 kept
    out = selective_macro_auc(y, np.full((4, 2), 0.5), std, fractions=(0.5,),
                              findings=["A", "B"])
    assert out["0.5"]["n_kept"] == 2 and out["0.5"]["excluded_findings"] == ["B"]
