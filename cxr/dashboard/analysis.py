"""The Predict page's work, without Streamlit: check an upload, MC-dropout probabilities, CAMs.

    >>> img = read_upload(open("film.dcm", "rb").read(), "film.dcm")   # UploadError if unusable
    >>> model, meta = load_model("checkpoints/demo-fusion/best.pt", device_name())
    >>> a = analyse(model, img.pixels, passes=25, rule=rule_for(meta)[0], name="film.dcm",
    ...             readout=load_readout(checkpoint))   # None: the checkpoint has no readout
    >>> a.mean, a.std, a.samples, a.score, a.flagged   # (14,), (14,), (25, 14), float, bool
    >>> a.calibrated, a.calls("youden"), a.ood_score, a.ood_flag     # None without a readout
    >>> notices(a, trained_on_synthetic(meta), checkpoint)  # what the page says before numbers
    >>> cams = explain(model, img.pixels, ["Effusion"])    # {"Effusion": HxW in [0, 1]}
    >>> rgb = overlay(display_film(img.pixels), cams["Effusion"], opacity=0.4)

With `name` (the upload's file name) each film's dropout masks come from (seed, name), as in
`cxr predict` (cxr.uncertainty.film_seeds_for), so the page and the command give the same
numbers for the same film (to the backbone's float rounding: the page runs it in ONNX
Runtime). With a readout (cxr/readout.py) the page shows calibrated probabilities and the call
per finding at an operating point; an out-of-distribution film is announced before any number.

`model` is any registry model; the pages pass `cxr.inference_speed.InferenceModel(model)`
(app_ui.model_for), so `analyse` and then `explain` on the same film run its backbone once.

Uploads are read and checked as `cxr predict` reads films (`load_image`, `check_frontal`); only
SAFE_META ever reaches the page, and load errors never quote a patient identifier
(cxr.data.dicom), so DICOM identifiers are neither shown nor kept.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from cxr.data.images import ImageLoadError, LoadedImage, check_frontal, load_image
from cxr.data.transforms import build_transform
from cxr.device import pick_device
from cxr.explain import cam_maps, overlay  # noqa: F401  (overlay: the pages blend CAMs with it)
from cxr.uncertainty import (DEFAULT_RULE, UNCERTAIN_STD, film_seeds_for, image_uncertainty,
                             mc_predict)

SAFE_META = ("format", "mode", "bits", "frames", "view", "modality", "body_part")
ACCEPTED = ("The page reads one frontal chest radiograph: PNG, JPEG, or a single-frame greyscale "
            "DICOM (CR or DX; uncompressed, JPEG, JPEG Lossless, JPEG-LS, JPEG 2000 or RLE).")
POINT_LABELS = {"youden": "Youden's J", "sensitivity": "high sensitivity (val >= 0.90)",
                "specificity": "high specificity (val >= 0.90)"}  # cxr.readout's operating points


# Films decoded at once by the whole server (its sessions are threads). One film at the pixel
# limit (images.MAX_PIXELS) takes a few hundred MB while it is decoded (tests/data/
# test_bombs.py); more uploads than this wait their turn instead of adding theirs.
MAX_DECODES = 2
_decoding = threading.BoundedSemaphore(MAX_DECODES)


class UploadError(ValueError):
    """An upload the page cannot analyse; the message says why, in words for the user."""


def read_upload(data: bytes, name: str = "upload") -> LoadedImage:
    """Decode and check one uploaded file (at least images.MIN_SIDE pixels each way, and what
    its DICOM tags say: a frontal chest radiograph); every problem is an UploadError. At most
    MAX_DECODES uploads are decoded at once; the others wait."""
    if not data:
        raise UploadError(f"{name}: the file is empty")
    try:
        with _decoding:
            img = check_frontal(load_image(data, name=name), name)
    except ImageLoadError as exc:
        raise UploadError(str(exc)) from None
    return LoadedImage(img.pixels, {k: img.meta[k] for k in SAFE_META if k in img.meta})


def device_name() -> str:
    """Where the pages run models: `cxr.device.pick_device("auto")`, as a string."""
    return str(pick_device())


def to_input(model: torch.nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """The film as the model's own preprocessing makes it: 3xSxS on the model's device."""
    x = build_transform(model.preprocess, train=False)(pixels)
    return x.to(next(model.parameters()).device)


@dataclass
class Analysis:
    labels: tuple[str, ...]
    mean: np.ndarray      # (14,) mean probability over the passes
    std: np.ndarray       # (14,) its standard deviation: the uncertainty
    samples: np.ndarray   # (passes, 14) each pass's probabilities
    threshold: float
    rule: str = DEFAULT_RULE  # the image rule (cxr.uncertainty): "mean" or "any"
    readout: object = None    # the checkpoint's cxr.readout.Readout, or None
    output: object = None     # its cxr.readout.ReadoutOutput for this film (calls at every point)

    @property
    def score(self) -> float:
        """The film's uncertainty under `rule` (mean or max std over the findings)."""
        return float(image_uncertainty(self.std, self.rule)[0])

    @property
    def flagged(self) -> bool:
        """Uncertain under `rule`: score > threshold."""
        return self.score > self.threshold

    @property
    def uncertain(self) -> list[str]:
        """The findings whose own std is above the threshold."""
        return [self.labels[k] for k in np.flatnonzero(self.std > self.threshold)]

    # -- the readout (None without one) -----------------------------------------------------
    @property
    def calibrated(self) -> np.ndarray | None:
        """(14,) calibrated probability (the MC mean through the readout's calibration)."""
        return None if self.output is None else self.output.calibrated[0]

    @property
    def ood_score(self) -> float | None:
        return None if self.output is None else float(self.output.ood_score[0])

    @property
    def ood_flag(self) -> bool | None:
        return None if self.output is None else bool(self.output.ood_flag[0])

    def calls(self, point: str) -> list[str] | None:
        """The 14 calls at `point` (positive / negative / uncertain / n/a), or None."""
        return None if self.output is None else list(self.output.calls[point][0])

    # -- what the page draws: calibrated numbers when there is a readout, else the raw ones --
    @property
    def shown_samples(self) -> np.ndarray:
        """(passes, 14) samples on the scale shown (calibrated with a readout)."""
        return self.samples if self.readout is None else self.readout.calibrate(self.samples)

    @property
    def shown_mean(self) -> np.ndarray:
        return self.mean if self.output is None else self.calibrated

    @property
    def shown_std(self) -> np.ndarray:
        return self.std if self.readout is None else self.shown_samples.std(axis=0)

    def top(self, k: int) -> list[int]:
        return [int(i) for i in np.argsort(-self.shown_mean)[:k]]

    def table(self, point: str = "youden"):
        """One row per finding, most likely first. Without a readout: probability (MC mean),
        std, uncertain (std > threshold). With one: calibrated, std (the MC std the rule uses),
        the call at `point`, its threshold (calibrated scale) and the validation sensitivity
        and specificity there, and the raw probability."""
        import pandas as pd

        from cxr.dashboard.points import interval_columns
        if self.output is None:
            return pd.DataFrame({"finding": self.labels, "probability": self.mean,
                                 "std": self.std, "uncertain": self.std > self.threshold}) \
                .sort_values("probability", ascending=False, ignore_index=True)
        at = self.readout.describe(point)["points"]
        rate = lambda f, key: np.nan if at[f][key] is None else at[f][key]  # noqa: E731
        return pd.DataFrame({
            "finding": self.labels, "calibrated": self.calibrated, "std": self.std,
            "call": self.calls(point),
            "threshold": [rate(f, "threshold") for f in self.labels],
            "val sensitivity": [rate(f, "val_sensitivity") for f in self.labels],
            "val specificity": [rate(f, "val_specificity") for f in self.labels],
            **interval_columns(self.readout, point, self.labels),
            "probability": self.mean}) \
            .sort_values("calibrated", ascending=False, ignore_index=True)


def analyse(model: torch.nn.Module, pixels: np.ndarray, passes: int = 25, seed: int | None = 0,
            threshold: float = UNCERTAIN_STD, rule: str = DEFAULT_RULE, name: str | None = None,
            readout=None) -> Analysis:
    """MC-dropout prediction for one film (seeded: the same film gives the same numbers). With
    `name`, the film's own dropout seed from (seed, name), as `cxr predict` draws it; with a
    readout (cxr.readout.load_readout), its calibration, calls and OOD score too."""
    x = to_input(model, pixels)[None]
    if name is not None and seed is not None:
        r = mc_predict(model, x, passes=passes, threshold=threshold, rule=rule,
                       film_seeds=film_seeds_for(seed, [name]))
    else:
        r = mc_predict(model, x, passes=passes, seed=seed, threshold=threshold, rule=rule)
    output = None if readout is None else readout.apply(r.mean, r.features, r.samples)
    return Analysis(tuple(model.labels), r.mean[0], r.std[0], r.samples[:, 0], threshold, rule,
                    readout, output)


@dataclass(frozen=True)
class Notice:
    kind: str   # "error", "warning" or "info": how prominently the page shows it
    text: str


def notices(result: Analysis, synthetic: bool | None, checkpoint=None) -> list[Notice]:
    """What the page must say BEFORE any number, most serious first: an out-of-distribution
    film (its numbers are not to be trusted), a model that learned from synthetic phantoms
    (cxr.data.layout.trained_on_synthetic), a checkpoint without a readout."""
    from cxr.readout import not_available
    out = []
    if result.ood_flag:
        out.append(Notice("error", (
            f"**Out of distribution.** This film is unlike the films this model was trained on "
            f"(OOD score {result.ood_score:.2f} > threshold {result.readout.ood.threshold:.2f}): "
            "its numbers are not to be trusted.")))
    if synthetic:
        out.append(Notice("warning", (
            "**Synthetic training data.** This model learned from drawn phantoms (the `cxr "
            "synth` demo data), not from radiographs: its numbers say nothing about real "
            "films.")))
    if result.readout is None:
        note = not_available(checkpoint)
        out.append(Notice("info", (
            f"{note[0].upper()}{note[1:]}. The probabilities below are raw MC-dropout means; no "
            "call is made and nothing checks whether the film is like the training films.")))
    return out


def explain(model: torch.nn.Module, pixels: np.ndarray, findings: list[str],
            method: str = "gradcam") -> dict:
    """finding -> Grad-CAM map (float32 in [0, 1], the model's input size) for one film
    (`cxr.explain.cam_maps`: the backbones run once, the gradient only through the head)."""
    if not findings:
        return {}
    return cam_maps(model, to_input(model, pixels), findings, method=method)


def display_film(pixels: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The film shrunk for the browser (a 3000 px DICOM need not travel at full size)."""
    h, w = pixels.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return pixels
    return cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)
