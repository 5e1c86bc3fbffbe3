import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from cxr.evaluation import metrics as m


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 5)) < 0.3).astype(np.uint8)
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(y.shape), 0, 1), 1)  # coarse: many ties
    return y, p


def test_auc_equals_sklearn_with_ties(data):
    y, p = data
    assert len(np.unique(p)) <= 11  # ties really happen
    for k in range(y.shape[1]):
        assert m.auc(y[:, k], p[:, k]) == roc_auc_score(y[:, k], p[:, k])
    assert np.allclose(m.per_finding_auc(y, p), roc_auc_score(y, p, average=None))
    assert m.micro_auc(y, p) == pytest.approx(roc_auc_score(y, p, average="micro"))


def test_macro_excludes_single_class_findings(data):
    y, p = data
    y = y.copy()
    y[:, 2] = 0
    aucs = m.per_finding_auc(y, p)
    macro, included = m.macro_auc(aucs)
    assert np.isnan(aucs[2]) and not included[2] and included.sum() == 4
    assert macro == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in (0, 1, 3, 4)]))


def test_ap_and_brier_equal_sklearn(data):
    y, p = data
    assert m.average_precision(y[:, 0], p[:, 0]) == average_precision_score(y[:, 0], p[:, 0])
    assert m.brier(y[:, 1], p[:, 1]) == pytest.approx(brier_score_loss(y[:, 1], p[:, 1]))


def test_ece_near_zero_when_calibrated():
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(np.uint8)  # P(y=1 | p) = p exactly
    assert m.ece(y, p) < 0.01
    assert m.ece(y, np.clip(p * 0.5, 0, 1)) > 0.2  # and far from 0 when it is not


def test_ece_of_constant_score_is_prevalence_gap():
    y = np.array([1] * 30 + [0] * 70)
    assert m.ece(y, np.full(100, 0.8)) == pytest.approx(0.5)
    assert m.ece(y, np.full(100, 0.3)) == pytest.approx(0.0)
    table = m.calibration_bins(y, np.full(100, 1.0))  # p == 1 lands in the last bin
    assert table["bin"].tolist() == [14] and table["count"].tolist() == [100]


def test_youden_threshold_and_sens_spec():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9])
    thr = m.youden_threshold(y, p)
    sens, spec = m.sens_spec(y, p, thr)
    best = max(m.sens_spec(y, p, t)[0] + m.sens_spec(y, p, t)[1] for t in p)
    assert sens + spec == pytest.approx(best) and sens + spec - 1 == pytest.approx(0.75)
    assert np.isnan(m.youden_threshold(np.zeros(4), np.arange(4) / 4))


def test_tables_have_the_plotting_columns(data):
    y, p = data
    roc = m.roc_table(y, p, list("abcde"))
    cal = m.calibration_table(y, p, list("abcde"))
    assert list(roc.columns) == ["finding", "fpr", "tpr", "threshold"]
    assert list(cal.columns) == ["finding", "bin", "mean_predicted", "observed_frequency", "count"]
    assert (cal.groupby("finding")["count"].sum() == len(y)).all()
    assert roc.groupby("finding")["tpr"].max().eq(1).all()
