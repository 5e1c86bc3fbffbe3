import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr.evaluation import bootstrap as b
from cxr.evaluation.metrics import macro_auc, per_finding_auc


def test_weighted_auc_equals_sklearn_with_sample_weights():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(np.uint8)
    p = np.round(0.2 * y + rng.random(300), 1)  # ties
    patients = rng.integers(0, 80, 300)
    counts, codes = next(b.resample_counts(patients, 5, seed=3))
    got = b.weighted_auc(y, p, codes, counts)
    for r in range(5):
        assert got[r] == pytest.approx(roc_auc_score(y, p, sample_weight=counts[r][codes]))


def test_resamples_draw_whole_patients():
    patients = np.array([5, 5, 5, 9, 2, 2, 7])
    counts, codes = next(b.resample_counts(patients, 50, seed=0))
    weights = counts[:, codes]  # per-image weight = times its patient was drawn
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 4] == weights[:, 5]).all()
    assert (counts.sum(axis=1) == 4).all()  # 4 patients drawn per resample, not 7 images


def test_same_seed_same_resamples_any_image_order():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 3)) < 0.3).astype(np.uint8)
    p = rng.random((200, 3))
    patients = rng.integers(0, 50, 200)
    perm = rng.permutation(200)
    one = b.bootstrap_aucs(y, p, patients, 100, seed=4)
    two = b.bootstrap_aucs(y[perm], p[perm], patients[perm], 100, seed=4)
    assert np.allclose(one, two)
    assert not np.allclose(one, b.bootstrap_aucs(y, p, patients, 100, seed=5))


def test_cis_contain_point_estimate():
    rng = np.random.default_rng(2)
    y = (rng.random((600, 4)) < 0.25).astype(np.uint8)
    p = np.clip(0.3 * y + rng.random(y.shape), 0, 1)
    patients = rng.integers(0, 200, 600)
    aucs = per_finding_auc(y, p)
    macro, included = macro_auc(aucs)
    cis = b.auc_confidence_intervals(y, p, patients, included, 500, seed=0)
    for k in range(4):
        lo, hi = cis["per_finding"][k]
        assert lo < aucs[k] < hi and hi - lo < 0.3
    assert cis["macro"][0] < macro < cis["macro"][1]


def test_duplicated_patient_widens_ci_versus_image_level():
    # One patient contributes 150 identical, confidently-wrong images; 150 other patients have
    # one image each. Resampling patients draws the 150 copies together (or not at all), so the
    # AUC swings far more than when each copy is resampled on its own.
    rng = np.random.default_rng(3)
    y_other = (rng.random(150) < 0.5).astype(np.uint8)
    p_other = np.clip(0.4 * y_other + 0.6 * rng.random(150), 0, 1)
    y = np.concatenate([np.ones(150, np.uint8), y_other])[:, None]
    p = np.concatenate([np.full(150, 0.05), p_other])[:, None]
    patients = np.concatenate([np.zeros(150, int), np.arange(1, 151)])
    included = np.array([True])

    def width(ids):
        lo, hi = b.auc_confidence_intervals(y, p, ids, included, 400, seed=0)["macro"]
        return hi - lo

    by_patient, by_image = width(patients), width(np.arange(300))
    assert by_patient > 2 * by_image


def test_paired_difference_uses_same_resamples():
    rng = np.random.default_rng(4)
    y = (rng.random((500, 3)) < 0.3).astype(np.uint8)
    good = np.clip(0.4 * y + rng.random(y.shape), 0, 1)
    bad = np.clip(0.1 * y + rng.random(y.shape), 0, 1)
    patients = rng.integers(0, 150, 500)
    inc = np.ones(3, bool)
    d = b.paired_difference(y, good, bad, patients, inc, 300, seed=0)
    expected = macro_auc(per_finding_auc(y, good))[0] - macro_auc(per_finding_auc(y, bad))[0]
    assert d["difference"] == pytest.approx(expected)
    assert 0 < d["ci"][0] < d["difference"] < d["ci"][1] and d["p_value"] < 0.01
    same = b.paired_difference(y, good, good, patients, inc, 300, seed=0)
    assert same["difference"] == 0 and same["ci"] == [0, 0] and same["p_value"] == 1.0
    # the same resamples: the CI equals the percentiles of per-resample macro differences
    boots = [b.macro_of(b.bootstrap_aucs(y, q, patients, 300, seed=0), inc) for q in (good, bad)]
    assert d["ci"] == pytest.approx(b.percentile_ci(boots[0] - boots[1]))
    # and so pairing cancels the test set's shared noise: a near-copy of a model differs from it
    # by far less than either model's own CI width
    near = np.clip(good + 0.02 * rng.standard_normal(good.shape), 0, 1)
    d_near = b.paired_difference(y, good, near, patients, inc, 300, seed=0)
    ci_good = b.auc_confidence_intervals(y, good, patients, inc, 300, seed=0)["macro"]
    assert d_near["ci"][1] - d_near["ci"][0] < 0.25 * (ci_good[1] - ci_good[0])
