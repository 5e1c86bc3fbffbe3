"""cxr/evaluation/calibration.py: temperature and Platt scaling of the MC-mean logit."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from cxr.evaluation.calibration import calibrate, clipped_logit, fit_calibration, nll


def _overconfident(n=4000, findings=3, sharpen=3.0, seed=0):
    """Labels drawn from true probabilities sigmoid(z), and a model that reports
    sigmoid(sharpen * z): over-confident by a factor the fit should find (T ~ sharpen)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, findings))
    y = (rng.random((n, findings)) < expit(z)).astype(np.uint8)
    return y, expit(sharpen * z)


def _nll_per_finding(y, p):
    return np.array([nll(y[:, k], clipped_logit(p[:, k])) for k in range(y.shape[1])])


def test_temperature_scaling_lowers_validation_nll_and_finds_the_temperature():
    y, p = _overconfident(sharpen=3.0)
    cal = fit_calibration(y, p, "temperature")
    assert cal.method == "temperature" and cal.fitted.all()
    assert np.allclose(cal.b, 0) and np.allclose(cal.temperature, 3.0, rtol=0.15)
    before, after = _nll_per_finding(y, p), _nll_per_finding(y, calibrate(p, cal))
    assert (after < before - 0.01).all(), (before, after)


def test_an_underconfident_model_is_sharpened():
    y, p = _overconfident(sharpen=0.4, seed=1)
    cal = fit_calibration(y, p, "temperature")
    assert (cal.temperature < 1).all()
    assert (_nll_per_finding(y, calibrate(p, cal)) < _nll_per_finding(y, p)).all()


def test_platt_also_moves_the_base_rate():
    y, p = _overconfident(sharpen=1.0, seed=2)
    shifted = expit(clipped_logit(p) + 2.0)  # every probability pushed up: a wrong base rate
    temp = fit_calibration(y, shifted, "temperature")
    platt = fit_calibration(y, shifted, "platt")
    assert np.allclose(platt.b, -2.0, atol=0.3) and np.allclose(platt.a, 1.0, atol=0.15)
    nll_t = _nll_per_finding(y, calibrate(shifted, temp))
    nll_p = _nll_per_finding(y, calibrate(shifted, platt))
    assert (nll_p < nll_t).all()


def test_a_finding_with_one_class_keeps_the_identity_and_says_so():
    y, p = _overconfident(n=500, seed=3)
    y[:, 1] = 0
    cal = fit_calibration(y, p, "temperature")
    assert cal.fitted.tolist() == [True, False, True]
    assert cal.a[1] == 1 and cal.b[1] == 0
    np.testing.assert_allclose(calibrate(p, cal)[:, 1], np.clip(p[:, 1], 1e-6, 1 - 1e-6))


def test_calibration_is_monotone_per_finding_and_maps_samples_too():
    y, p = _overconfident(n=300, seed=4)
    cal = fit_calibration(y, p, "platt")
    out = calibrate(p, cal)
    for k in range(p.shape[1]):  # the order within a finding (hence AUC) is unchanged
        order = np.argsort(p[:, k], kind="stable")
        assert (np.diff(out[order, k]) >= 0).all()
    samples = np.stack([p, p * 0.9])  # (passes, N, F)
    np.testing.assert_allclose(calibrate(samples, cal)[0], out)


def test_bad_input_is_refused():
    y, p = _overconfident(n=50)
    with pytest.raises(ValueError, match="calibration method 'isotonic'"):
        fit_calibration(y, p, "isotonic")
    with pytest.raises(ValueError, match="same"):
        fit_calibration(y[:, :2], p)
