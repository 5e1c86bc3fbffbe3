"""A checkpoint's readout: calibration, operating points and an out-of-distribution guard,
fitted on the run's own validation (and training) films, in ONE versioned sidecar file.

    cxr calibrate --checkpoint runs/fusion/best.pt            # -> runs/fusion/best.readout.pt

    >>> from cxr.readout import load_readout
    >>> readout = load_readout("runs/fusion/best.pt")    # None: the checkpoint has no sidecar
    >>> out = readout.apply(mean, features, samples)     # MC means (N, 14), pooled (N, C),
    >>> out.calibrated, out.calls["youden"], out.ood_score, out.ood_flag   # samples (P, N, 14)

Why a sidecar (`best.pt` -> `best.readout.pt`) and not the checkpoint's own metadata: the
worklist and metrics.json name the model by the sha256 of the checkpoint FILE, and rewriting the
checkpoint to add the readout would change that hash and orphan every result keyed by it. The
sidecar instead records the sha256 of the checkpoint it was fitted for; loading it beside any
other file (a retrained best.pt) is an error naming both hashes, never a silent mismatch. A
checkpoint without a sidecar still predicts, and callers say so (`not_available`).

What is in it (cxr/evaluation/{calibration,operating_points,ood}.py say how each is fitted):
- calibration: per-finding temperature (or Platt) map of the MC-mean logit, fitted on VAL;
- operating points: per finding, `youden`, `sensitivity` (val sensitivity >= 0.90) and
  `specificity` (val specificity >= 0.90), each a threshold on the CALIBRATED probability with
  its validation sensitivity and specificity;
- ood: the mean and LedoitWolf precision of the pooled TRAINING features, and the conformal
  threshold on VALIDATION (and, where they look alike, training leave-one-out) scores, with the
  flag rate it promises for in-distribution films and that rate's 95% interval;
- provenance: split, seeds, data version, passes, and the image ids every part was fitted on.

File format (torch.save; read with `torch.load(weights_only=True)`; written atomically):
    {"format": "cxr-readout", "version": 1, "checkpoint_sha256": "<64 hex>",
     "tensors": {"ood_mean": float64 (C,), "ood_precision": float64 (C, C)},
     "meta": {"labels": [14], "calibration": {"method", "a", "b", "temperature", "fitted"},
              "operating_points": {"target": 0.9, point: {finding: {"threshold",
                                   "val_sensitivity", "val_specificity"}}},
              "ood": {"method", "threshold", "share", "shrinkage", "feature_dim", "n_train",
                      "threshold_method", "n_calibration", "expected_flag_rate",
                      "flag_rate_interval", "calibration"},  # the last five: absent in
                                                             # readouts before the conformal one
              "provenance": {...}}}          # JSON-safe: NaN stored as null

The call per finding at an operating point t (calibrated scale; `call_findings`):
    uncertain  when the MC passes disagree about the side of t: t lies between the 10th and
               90th percentiles of that finding's calibrated MC samples (q10 < t <= q90);
    positive   otherwise, when the calibrated mean >= t;
    negative   otherwise;
    n/a        when the finding has no threshold (its validation split had one class).
Without MC samples (a single deterministic pass) only positive / negative / n/a are possible.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr.atomic import atomic_open
from cxr.evaluation.calibration import Calibration, calibrate
from cxr.evaluation.ood import OODModel, ood_score
from cxr.evaluation.operating_points import POINTS, TARGET, thresholds
from cxr.hashing import file_sha256
from cxr.jsonsafe import json_safe

FORMAT, VERSION = "cxr-readout", 1
SUFFIX = ".readout.pt"  # best.pt -> best.readout.pt
CALLS = ("positive", "negative", "uncertain", "n/a")
CALL_QUANTILES = (10, 90)  # percentiles of the MC samples that must lie on one side of t
NOT_AVAILABLE = "no calibration / operating points / OOD guard available"


class ReadoutError(ValueError):
    """A sidecar that is unreadable, of another format or version, or for another checkpoint."""


def readout_path(checkpoint: str | Path) -> Path:
    """The sidecar of a checkpoint: RUN/best.pt -> RUN/best.readout.pt."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def not_available(checkpoint: str | Path | None = None) -> str:
    """The message every output gives when a checkpoint has no readout (or, with no checkpoint
    named, when the caller passed none)."""
    if checkpoint is None:
        return (f"{NOT_AVAILABLE}: no readout was given (cxr.readout.load_readout(checkpoint) "
                "loads the one `cxr calibrate` wrote)")
    return (f"{NOT_AVAILABLE} for this checkpoint (run `cxr calibrate --checkpoint {checkpoint}` "
            "to fit them)")


@dataclass
class ReadoutOutput:
    calibrated: np.ndarray          # (N, F) calibrated MC-mean probability
    calls: dict[str, np.ndarray]    # point -> (N, F) str: positive / negative / uncertain / n/a
    ood_score: np.ndarray           # (N,) Mahalanobis distance to the training features
    ood_flag: np.ndarray            # (N,) bool: score above the readout's threshold


@dataclass
class Readout:
    checkpoint_sha256: str
    labels: tuple[str, ...]
    calibration: Calibration
    points: dict                    # {point: {finding: {threshold, val_sensitivity, ...}}}
    ood: OODModel
    provenance: dict = field(default_factory=dict)
    target: float = TARGET

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of MC means (N, F) or samples (P, N, F)."""
        return calibrate(p, self.calibration)

    def thresholds(self, point: str) -> np.ndarray:
        """(F,) thresholds of one operating point on the calibrated scale (NaN: none)."""
        if point not in POINTS:
            raise ValueError(f"operating point {point!r}: expected one of {', '.join(POINTS)}")
        return thresholds(self.points, point, self.labels)

    def describe(self, point: str) -> dict:
        """What a reader of the calls at `point` needs, JSON-safe (`cxr predict`'s readout.json,
        the pages): per finding the threshold (calibrated scale) and its validation sensitivity
        and specificity, the OOD threshold, the calibration method."""
        self.thresholds(point)  # an unknown point is an error
        return _plain({"available": True, "operating_point": point, "target": self.target,
                       "calibration": self.calibration.method,
                       "ood": {"threshold": self.ood.threshold, "share": self.ood.share,
                               **ood_promise(self.ood)},
                       "checkpoint_sha256": self.checkpoint_sha256,
                       "points": {f: self.points[point][f] for f in self.labels}})

    def ood_scores(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != len(self.ood.mean):
            raise ReadoutError(f"features of shape {features.shape} do not match the readout's "
                               f"{len(self.ood.mean)} feature dimensions: another model?")
        return ood_score(features, self.ood.mean, self.ood.precision)

    def apply(self, mean: np.ndarray, features: np.ndarray,
              samples: np.ndarray | None = None) -> ReadoutOutput:
        """Calibrated means, the calls at every point, and the OOD score and flag of N films:
        mean (N, F) MC means, features (N, C) pooled features, samples (P, N, F) or None."""
        mean = np.asarray(mean, dtype=np.float64)
        if mean.ndim != 2 or mean.shape[1] != len(self.labels):
            raise ReadoutError(f"probabilities of shape {mean.shape}: expected (N, "
                               f"{len(self.labels)})")
        cal = self.calibrate(mean)
        cal_samples = None if samples is None else self.calibrate(samples)
        calls = {p: call_findings(cal, self.thresholds(p), cal_samples) for p in POINTS}
        score = self.ood_scores(features)
        return ReadoutOutput(cal, calls, score, score > self.ood.threshold)

    # -- the file ---------------------------------------------------------------------------
    def to_payload(self) -> dict:
        c = self.calibration
        meta = {"labels": list(self.labels),
                "calibration": {"method": c.method, "a": c.a.tolist(), "b": c.b.tolist(),
                                "temperature": c.temperature.tolist(),
                                "fitted": c.fitted.tolist()},
                "operating_points": {"target": self.target, **self.points},
                "ood": {"method": "mahalanobis_ledoitwolf", "threshold": self.ood.threshold,
                        "share": self.ood.share, "shrinkage": self.ood.shrinkage,
                        "feature_dim": int(len(self.ood.mean)),
                        "n_train": self.provenance.get("n_train_films"),
                        "threshold_method": self.ood.method,
                        "n_calibration": self.ood.n_calibration,
                        "expected_flag_rate": self.ood.expected_flag_rate,
                        "flag_rate_interval": self.ood.flag_rate_interval,
                        "calibration": self.ood.calibration},
                "provenance": self.provenance}
        return {"format": FORMAT, "version": VERSION, "checkpoint_sha256": self.checkpoint_sha256,
                "tensors": {"ood_mean": torch.from_numpy(np.asarray(self.ood.mean, np.float64)),
                            "ood_precision": torch.from_numpy(
                                np.asarray(self.ood.precision, np.float64))},
                "meta": _plain(meta)}

    @classmethod
    def from_payload(cls, payload: dict, source: str) -> "Readout":
        try:
            meta, tensors = payload["meta"], payload["tensors"]
            c, o = meta["calibration"], meta["ood"]
            points = {p: meta["operating_points"][p] for p in POINTS}
            cal = Calibration(c["method"], np.asarray(c["a"], float), np.asarray(c["b"], float),
                              np.asarray(c["fitted"], bool))
            ood = OODModel(tensors["ood_mean"].numpy(), tensors["ood_precision"].numpy(),
                           float(o["threshold"]), float(o["share"]), float(o["shrinkage"]),
                           o.get("threshold_method", "quantile"), o.get("n_calibration"),
                           o.get("expected_flag_rate"), o.get("flag_rate_interval"),
                           o.get("calibration"))
            return cls(payload["checkpoint_sha256"], tuple(meta["labels"]), cal, points, ood,
                       meta.get("provenance") or {}, float(meta["operating_points"]["target"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReadoutError(f"readout {source} is incomplete ({type(exc).__name__}: {exc}); "
                               "run `cxr calibrate` again") from None


def ood_promise(ood: OODModel) -> dict:
    """What the OOD threshold promises for in-distribution films: {threshold_method,
    n_calibration, expected_flag_rate, flag_rate_interval [lo, hi] (95%), note}. A readout
    from before the conformal threshold promises only 1 - share, with no interval."""
    if ood.method != "conformal":
        note = (ood.calibration or {}).get("note") or (
            "threshold from the validation quantile (a readout before the conformal threshold): "
            "no finite-sample promise; run `cxr calibrate` again for one")
        return {"threshold_method": ood.method, "n_calibration": ood.n_calibration,
                "expected_flag_rate": 1 - ood.share, "flag_rate_interval": None, "note": note}
    return {"threshold_method": ood.method, "n_calibration": ood.n_calibration,
            "expected_flag_rate": ood.expected_flag_rate,
            "flag_rate_interval": list(ood.flag_rate_interval),
            "note": (ood.calibration or {}).get("note", "")}


def _plain(meta: dict) -> dict:
    """meta as plain JSON values: NaN as null, and no str subclass (torch.__version__) or
    tuple that torch.load(weights_only=True) would refuse."""
    return json.loads(json.dumps(json_safe(meta)))


def call_findings(cal_mean: np.ndarray, t: np.ndarray,
                  cal_samples: np.ndarray | None = None) -> np.ndarray:
    """(N, F) calls at thresholds t (F,) from calibrated means (N, F) and, when given,
    calibrated MC samples (P, N, F): the rule in this module's docstring."""
    cal_mean = np.asarray(cal_mean)
    t = np.asarray(t, dtype=np.float64)
    calls = np.where(cal_mean >= t, "positive", "negative").astype(object)
    if cal_samples is not None:
        lo, hi = np.percentile(np.asarray(cal_samples), CALL_QUANTILES, axis=0)
        calls[(lo < t) & (t <= hi)] = "uncertain"
    calls[:, ~np.isfinite(t)] = "n/a"
    return calls


def fit_readout(y_val: np.ndarray, p_val: np.ndarray, val_features: np.ndarray,
                train_features: np.ndarray, checkpoint_sha256: str, labels,
                method: str = "temperature", share: float = 0.95,
                provenance: dict | None = None, pool_train: bool = True) -> Readout:
    """Fit the three parts: calibration on validation labels y_val (N, F) and MC means p_val;
    operating points on the CALIBRATED validation probabilities; the OOD model on the
    training features, its conformal threshold on the validation features' scores (and the
    training films' leave-one-out scores, `pool_train`, when they look alike: ood.fit_ood)."""
    from cxr.evaluation.calibration import fit_calibration
    from cxr.evaluation.ood import fit_ood
    from cxr.evaluation.operating_points import choose_points

    labels = tuple(labels)
    cal = fit_calibration(y_val, p_val, method)
    points = choose_points(y_val, calibrate(p_val, cal), labels)
    ood = fit_ood(train_features, val_features, share, pool_train)
    return Readout(checkpoint_sha256, labels, cal, points, ood, dict(provenance or {}))


def save_readout(readout: Readout, checkpoint: str | Path) -> Path:
    """Write the sidecar of `checkpoint` atomically; the readout must have been fitted for it."""
    sha = file_sha256(checkpoint)
    if sha != readout.checkpoint_sha256:
        raise ReadoutError(f"readout fitted for checkpoint sha256 {readout.checkpoint_sha256[:12]} "
                           f"cannot be saved beside {checkpoint} (sha256 {sha[:12]})")
    path = readout_path(checkpoint)
    with atomic_open(path, "wb") as f:
        torch.save(readout.to_payload(), f)
    return path


def load_readout(checkpoint: str | Path, checkpoint_sha256: str | None = None) -> Readout | None:
    """The checkpoint's readout, or None when it has no sidecar. A sidecar of another
    checkpoint, format or version is a ReadoutError naming both files' hashes or versions."""
    path = readout_path(checkpoint)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign pickle, random bytes
        raise ReadoutError(f"readout {path} cannot be read with weights_only=True "
                           f"({type(exc).__name__}); run `cxr calibrate` again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ReadoutError(f"{path} is not a cxr readout (format {FORMAT!r} expected)")
    if payload.get("version") != VERSION:
        raise ReadoutError(f"readout {path} has version {payload.get('version')}, this cxr "
                           f"reads version {VERSION}: run `cxr calibrate` again")
    sha = checkpoint_sha256 or file_sha256(checkpoint)
    if payload.get("checkpoint_sha256") != sha:
        raise ReadoutError(f"readout {path} was fitted for checkpoint sha256 "
                           f"{str(payload.get('checkpoint_sha256'))[:12]}, but {checkpoint} has "
                           f"sha256 {sha[:12]} (retrained?): run `cxr calibrate --checkpoint "
                           f"{checkpoint}` again")
    return Readout.from_payload(payload, str(path))


def annotate(preds: list, readout: Readout | None, point: str = "youden",
             checkpoint: str | Path | None = None) -> list:
    """predict_images' post-step: fill each Prediction's calibrated, calls (at `point`),
    operating_point, ood_score and ood_flag from its probs, samples and features; without a
    readout they stay None and readout_note says so (`not_available`)."""
    if readout is None:
        for p in preds:
            p.readout_note = not_available(checkpoint)
        return preds
    readout.thresholds(point)  # an unknown point is an error even with no film to predict
    if not preds:
        return preds
    if any(p.features is None for p in preds):
        raise ReadoutError("predictions without pooled features (MCResult.features) cannot be "
                           "scored for out-of-distribution")
    out = readout.apply(np.stack([p.probs for p in preds]), np.stack([p.features for p in preds]),
                        np.stack([p.samples for p in preds], axis=1))
    for i, p in enumerate(preds):
        p.calibrated, p.calls, p.operating_point = (out.calibrated[i], list(out.calls[point][i]),
                                                    point)
        p.ood_score, p.ood_flag = float(out.ood_score[i]), bool(out.ood_flag[i])
    return preds
