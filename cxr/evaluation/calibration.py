"""Post-hoc calibration of the MC-mean probability, per finding, fitted on VALIDATION only.

    >>> from cxr.evaluation.calibration import fit_calibration, calibrate
    >>> cal = fit_calibration(y_val, p_val, method="temperature")    # (N, 14) labels, MC means
    >>> p_cal = calibrate(p_test, cal)                                # same shape, in (0, 1)

Both methods act on the logit of the MC mean probability, clipped to [EPS, 1 - EPS] so that a
saturated 0 or 1 has a finite logit:
- `temperature` (Guo et al. 2017, one T > 0 per finding): p' = sigmoid(logit(p) / T), T chosen
  by minimising the validation negative log-likelihood (scipy's bounded scalar minimiser on
  log T). T > 1 softens an over-confident finding, T < 1 sharpens it. It never changes the
  order of the films within a finding, so AUC and the calls at a threshold moved with it stay
  the same.
- `platt` (Platt 1999, a and b per finding): p' = sigmoid(a * logit(p) + b), an unpenalised
  logistic regression (scikit-learn) of the label on the logit. It can also move the base rate.
A finding whose validation split lacks positives or negatives has nothing to fit: it keeps the
identity map (T = 1; a = 1, b = 0) and `fitted` says False for it, rather than a map pushed to
the boundary by one class. Both are stored as the slope `a` and intercept `b` of the logit map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before the logit (|logit| <= 13.8)
METHODS = ("temperature", "platt")
LOG_T_BOUNDS = (-5.0, 5.0)  # T in [0.0067, 148]: wide enough for any model, finite either way


@dataclass(frozen=True)
class Calibration:
    method: str        # "temperature" or "platt"
    a: np.ndarray      # (F,) slope on the logit (temperature: 1 / T)
    b: np.ndarray      # (F,) intercept (temperature: 0)
    fitted: np.ndarray  # (F,) bool: False where validation had one class (identity kept)

    @property
    def temperature(self) -> np.ndarray:
        """(F,) T = 1 / a (meaningful for method "temperature")."""
        return 1.0 / self.a


def clipped_logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS))


def nll(y: np.ndarray, z: np.ndarray) -> float:
    """Mean binary negative log-likelihood of labels y under logits z (numerically stable)."""
    y, z = np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _fit_temperature(y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    from scipy.optimize import minimize_scalar  # fitting only: predicting need not import it
    res = minimize_scalar(lambda log_t: nll(y, z / np.exp(log_t)), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-6})
    return float(np.exp(-res.x)), 0.0


def _fit_platt(y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(C=np.inf, max_iter=1000).fit(z.reshape(-1, 1), y)  # C=inf: no penalty
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fit_calibration(y: np.ndarray, p: np.ndarray, method: str = "temperature") -> Calibration:
    """Fit one map per finding (column) on VALIDATION labels y (N, F) and MC means p (N, F)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    y, z = np.asarray(y), clipped_logit(p)
    if y.shape != z.shape or y.ndim != 2:
        raise ValueError(f"labels {y.shape} and probabilities {z.shape} must be the same (N, F)")
    fit = _fit_temperature if method == "temperature" else _fit_platt
    a, b, fitted = np.ones(y.shape[1]), np.zeros(y.shape[1]), np.zeros(y.shape[1], dtype=bool)
    for k in range(y.shape[1]):
        if 0 < int(y[:, k].sum()) < len(y):
            a[k], b[k] = fit(y[:, k], z[:, k])
            fitted[k] = True
    return Calibration(method, a, b, fitted)


def calibrate(p: np.ndarray, cal: Calibration) -> np.ndarray:
    """Calibrated probabilities, same shape as p; the last axis is the finding (F,). Works on
    MC means (N, F) and on MC samples (passes, N, F) alike."""
    return expit(cal.a * clipped_logit(p) + cal.b)
