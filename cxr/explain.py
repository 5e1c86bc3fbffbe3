"""Grad-CAM / Grad-CAM++ heatmaps per finding (pytorch-grad-cam), overlays, pointing game.

    >>> from cxr.checkpoint import load_model
    >>> from cxr.explain import cam_maps, overlay
    >>> model, meta = load_model("checkpoints/demo-fusion/best.pt")
    >>> maps = cam_maps(model, x, ["Effusion", "Mass"])      # x: 3xSxS from EvalTransform
    >>> rgb = overlay(pixels, maps["Effusion"], opacity=0.4)  # HxWx3 uint8 over the film

The target is the `forward_features` map (`model.gradcam_layer`'s output; for `fusion` the
self-attention layer's 512-channel output), and each finding is explained through its own logit
(ClassifierOutputTarget). Maps are ReLU-ed, scaled to [0, 1] per image (a map with no
positive evidence is all zeros) and upsampled to the input tensor's size, or to `size`.

Pointing game (Zhang et al. 2018): a hit when the map's maximum falls inside one of that
finding's expert boxes on that image; the chance rate is what a uniformly random point would
score, the mean fraction of the image the boxes cover:

    >>> from cxr.data.metadata import read_bbox, boxes_by_image
    >>> boxes = boxes_by_image(read_bbox("data/demo/BBox_List_2017.csv"))
    >>> pointing_game(model, [(x, "00000001_000.png", (1024, 1024)), ...], boxes, 224)
    {"Mass": {"hits": 3, "n": 5, "hit_rate": 0.6, "random_baseline": 0.04}, ...}
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxr.labels import FINDINGS, finding_index

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}


def cam_maps(model: torch.nn.Module, x: torch.Tensor, findings: Sequence[str],
             method: str = "gradcam", size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """finding -> heatmap float32 in [0, 1]: (B, H, W) for a batch x, (H, W) for one 3xSxS
    image. (H, W) = `size` if given (e.g. the film's pixels.shape), else x's own size.

    The target layer's output *is* forward_features' map (the model contract), so the backbones
    run once without autograd and Grad-CAM runs on that map through the head alone: the same
    maps as hooking `model.gradcam_layer` and back-propagating through DenseNet and
    EfficientNet (tests/test_explain.py), several times faster (bench/bench_predict_page.py).
    Works on eval, frozen and no_grad callers alike; the hooks sit on a private wrapper, so
    threads sharing a model do not collide. The model's mode and .grad are restored."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {sorted(METHODS)}")
    single = x.dim() == 3
    x = (x[None] if single else x).detach()
    labels = list(getattr(model, "labels", FINDINGS))
    indices = [labels.index(FINDINGS[finding_index(f)]) for f in findings]
    was_training = model.training
    saved_grads = [(p, p.grad) for p in model.parameters()]
    model.eval()
    try:
        with torch.no_grad():
            features = model.forward_features(x)  # (B, C, h, w): the map the head pools
        head = _Head(model)
        cam = METHODS[method](head, [head.tap])
        cam.compute_input_gradient = True  # the map is a leaf: let the gradient reach it
        try:
            with torch.enable_grad():
                out = {name: _resize(_to_input_size(cam(features, [ClassifierOutputTarget(k)]
                                                        * len(x)), x), size)
                       for name, k in zip(findings, indices)}
        finally:
            cam.activations_and_grads.release()  # remove the hooks; `with` would swallow errors
    finally:
        model.train(was_training)
        for p, g in saved_grads:
            p.grad = g
    return {k: v[0] for k, v in out.items()} if single else out


def _to_input_size(maps: np.ndarray, x: torch.Tensor) -> np.ndarray:
    """Feature-map-sized CAMs -> x's size, scaled to [0, 1] per image after the upsampling,
    exactly as pytorch-grad-cam does when the target layer sits inside the model."""
    h, w = x.shape[-2:]
    resized = scale_cam_image(np.nan_to_num(np.asarray(maps, dtype=np.float32)), (w, h))
    return scale_cam_image(resized)  # bilinear upsampling moved the extremes off 0 and 1


class _Head(torch.nn.Module):
    """The model's head behind an identity 'layer', so Grad-CAM runs on a precomputed map."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.tap = model, torch.nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.tap(features))


def _resize(maps: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        h, w = size
        maps = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])
    return np.clip(maps, 0.0, 1.0)


def overlay(pixels: np.ndarray, cam: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """Film (HxW float in [0, 1]) + heatmap (any size, resized to the film) -> HxWx3 uint8 RGB,
    jet colour map; opacity 0 shows the film alone, 1 the heatmap alone."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    film = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    heat = _resize(np.asarray(cam, dtype=np.float32)[None], film.shape)[0]
    if opacity == 0.0:  # the blend below divides by the max, 0 for a black film
        return np.repeat(np.round(film * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return _blend(film, heat, image_weight=1.0 - opacity)


def _blend(film: np.ndarray, heat: np.ndarray, image_weight: float) -> np.ndarray:
    """pytorch-grad-cam's show_cam_on_image(grey film as RGB, heat, use_rgb=True), to the
    bit (tests/test_explain.py), in place and with the grey film broadcast over the three
    channels instead of copied: a 1024 px overlay is a third of a cached Predict page run
    with the library's six full-size temporaries (bench/bench_predict_page.py)."""
    rgb = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * heat), cv2.COLORMAP_JET),
                       cv2.COLOR_BGR2RGB).astype(np.float32)
    rgb /= 255
    rgb *= 1 - image_weight
    rgb += (image_weight * film)[:, :, None]
    rgb /= rgb.max()
    rgb *= 255
    return rgb.astype(np.uint8)


def box_mask(boxes: Iterable[tuple[float, float, float, float]], original_size: tuple[int, int],
             grid: int) -> np.ndarray:
    """Union of (x, y, w, h) boxes given in original pixels (original_size = (w, h)) on a
    grid x grid mask: a cell is inside when its centre is; a box smaller than a cell still
    marks the cell holding its centre."""
    ow, oh = original_size
    mask = np.zeros((grid, grid), dtype=bool)
    centres = np.arange(grid) + 0.5
    for x, y, w, h in boxes:
        x0, x1 = x * grid / ow, (x + w) * grid / ow
        y0, y1 = y * grid / oh, (y + h) * grid / oh
        cols = (centres >= x0) & (centres <= x1)
        rows = (centres >= y0) & (centres <= y1)
        if not cols.any() or not rows.any():
            cx, cy = min(int((x0 + x1) / 2), grid - 1), min(int((y0 + y1) / 2), grid - 1)
            mask[max(cy, 0), max(cx, 0)] = True
        mask[np.ix_(rows, cols)] = True
    return mask


def pointing_game(model: torch.nn.Module, images, boxes_by_image: Mapping[str, list],
                  image_size: int, findings: Sequence[str] = FINDINGS,
                  method: str = "gradcam") -> dict[str, dict]:
    """Hit rate per finding over the (image, finding) pairs that have boxes.

    images: iterable of (tensor 3xSxS with S = image_size, image name, original (w, h));
    boxes_by_image: {image name: [(finding, x, y, w, h), ...]} in original pixels
    (`cxr.data.metadata.boxes_by_image`). A map with no maximum (all zeros) is a miss.
    Returns {finding: {"hits", "n", "hit_rate", "random_baseline"}} for evaluated findings."""
    wanted = {FINDINGS[finding_index(f)] for f in findings}
    hits: dict[str, int] = {}
    areas: dict[str, list[float]] = {}
    for x, name, original_size in images:
        if tuple(x.shape[-2:]) != (image_size, image_size):
            raise ValueError(f"{name}: tensor is {tuple(x.shape)}, expected 3x{image_size}x"
                             f"{image_size}")
        by_finding: dict[str, list] = {}
        for finding, *box in boxes_by_image.get(name, []):
            finding = FINDINGS[finding_index(finding)]
            if finding in wanted:
                by_finding.setdefault(finding, []).append(box)
        if not by_finding:
            continue
        maps = cam_maps(model, x, list(by_finding), method=method)
        for finding, boxes in by_finding.items():
            mask = box_mask(boxes, original_size, image_size)
            cam = maps[finding]
            peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
            hit = bool(cam.max() > cam.min() and mask[peak])
            hits[finding] = hits.get(finding, 0) + hit
            areas.setdefault(finding, []).append(float(mask.mean()))
    return {f: {"hits": hits[f], "n": len(areas[f]), "hit_rate": hits[f] / len(areas[f]),
                "random_baseline": float(np.mean(areas[f]))}
            for f in FINDINGS if f in areas}
