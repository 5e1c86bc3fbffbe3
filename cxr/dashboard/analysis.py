"""The Predict page's work, without Streamlit: check an upload, MC-dropout probabilities, CAMs.

    >>> img = read_upload(open("film.dcm", "rb").read(), "film.dcm")   # UploadError if unusable
    >>> model, meta = load_model("checkpoints/demo-fusion/best.pt", device_name())
    >>> a = analyse(model, img.pixels, passes=25, rule=rule_for(meta)[0])
    >>> a.mean, a.std, a.samples, a.score, a.flagged   # (14,), (14,), (25, 14), float, bool
    >>> cams = explain(model, img.pixels, ["Effusion"])    # {"Effusion": HxW in [0, 1]}
    >>> rgb = overlay(display_film(img.pixels), cams["Effusion"], opacity=0.4)

`model` is any registry model; the pages pass `cxr.inference_speed.InferenceModel(model)`
(app_ui.model_for), whose backbone runs in ONNX Runtime on CPU and once per film: `analyse`
and then `explain` on the same film reuse its feature map. With the plain model each call
runs the backbone (the reference the tests compare against).

Uploads are decoded by `cxr.data.images.load_image` (content decides PNG / JPEG / DICOM, never
the extension) and checked by `check_frontal`, the rule `cxr predict` applies too; only the
whitelisted meta (format, mode, bits, frames, view, modality, body part) ever reaches the page,
and load errors never quote a patient identifier (cxr.data.dicom), so DICOM identifiers are
neither shown nor kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from cxr.data.images import MIN_SIDE, ImageLoadError, LoadedImage, check_frontal, load_image
from cxr.data.transforms import build_transform
from cxr.device import pick_device
from cxr.explain import cam_maps, overlay  # noqa: F401  (overlay: the pages blend CAMs with it)
from cxr.uncertainty import DEFAULT_RULE, UNCERTAIN_STD, image_uncertainty, mc_predict

SAFE_META = ("format", "mode", "bits", "frames", "view", "modality", "body_part")
ACCEPTED = ("The page reads one frontal chest radiograph: PNG, JPEG, or a single-frame greyscale "
            "DICOM (CR or DX; uncompressed, JPEG, JPEG Lossless, JPEG-LS, JPEG 2000 or RLE).")


class UploadError(ValueError):
    """An upload the page cannot analyse; the message says why, in words for the user."""


def read_upload(data: bytes, name: str = "upload") -> LoadedImage:
    """Decode and check one uploaded file (at least MIN_SIDE pixels each way, and what its DICOM
    tags say: a frontal chest radiograph); every problem is an UploadError."""
    if not data:
        raise UploadError(f"{name}: the file is empty")
    try:
        img = check_frontal(load_image(data, name=name), name)
    except ImageLoadError as exc:
        raise UploadError(str(exc)) from None
    return LoadedImage(img.pixels, {k: img.meta[k] for k in SAFE_META if k in img.meta})


def device_name() -> str:
    """Where the pages run models: `cxr.device.pick_device("auto")`, as a string."""
    return str(pick_device())


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_input(model: torch.nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """The film as the model's own preprocessing makes it: 3xSxS on the model's device."""
    return build_transform(model.preprocess, train=False)(pixels).to(model_device(model))


@dataclass
class Analysis:
    labels: tuple[str, ...]
    mean: np.ndarray      # (14,) mean probability over the passes
    std: np.ndarray       # (14,) its standard deviation: the uncertainty
    samples: np.ndarray   # (passes, 14) each pass's probabilities
    threshold: float
    rule: str = DEFAULT_RULE  # the image rule (cxr.uncertainty): "mean" or "any"

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

    def top(self, k: int) -> list[int]:
        return [int(i) for i in np.argsort(-self.mean)[:k]]

    def table(self):
        import pandas as pd
        return pd.DataFrame({"finding": self.labels, "probability": self.mean, "std": self.std,
                             "uncertain": self.std > self.threshold}) \
            .sort_values("probability", ascending=False, ignore_index=True)


def analyse(model: torch.nn.Module, pixels: np.ndarray, passes: int = 25, seed: int | None = 0,
            threshold: float = UNCERTAIN_STD, rule: str = DEFAULT_RULE) -> Analysis:
    """MC-dropout prediction for one film (seeded: the same film gives the same numbers)."""
    x = to_input(model, pixels)[None]
    r = mc_predict(model, x, passes=passes, seed=seed, threshold=threshold, rule=rule)
    return Analysis(tuple(model.labels), r.mean[0], r.std[0], r.samples[:, 0], threshold, rule)


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
