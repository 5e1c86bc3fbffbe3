"""Train / eval transforms: greyscale [0, 1] HxW -> normalised 3xSxS tensor for ImageNet backbones.

    >>> import numpy as np
    >>> from cxr.data.transforms import TrainTransform, EvalTransform, AugmentConfig
    >>> train = TrainTransform(224, augment=AugmentConfig(rotation=0.05))
    >>> x = train(pixels, np.random.default_rng([seed, epoch, index]))   # 3x224x224 float32
    >>> x = EvalTransform(224)(pixels)                                    # deterministic
    >>> TrainTransform(224, augment=AugmentConfig(fill_mode="black"))      # zeros, not mirrors

Augmentation follows the report's Keras layers, each amount configurable (0 switches it off):
  hflip       probability of a horizontal flip (Keras RandomFlip("horizontal"): 0.5)
  rotation    Keras RandomRotation factor, a FRACTION OF A FULL TURN: 0.1 draws an angle
              uniformly in [-0.1 * 360, +0.1 * 360] = [-36, +36] degrees
  zoom        Keras RandomZoom factor: scale drawn uniformly in [1 - zoom, 1 + zoom]
  brightness  Keras RandomBrightness factor: adds a delta drawn uniformly in
              [-brightness, +brightness] (fraction of the [0, 1] range), then clips
Rotation and zoom are one bilinear affine warp about the centre. What it uncovers is filled
by `fill_mode`: "reflect" (the default) mirrors the image about its edge, d c b a | a b c d, as
Keras' RandomRotation and RandomZoom do unless told otherwise (fill_mode="reflect", the
report's pipeline); "black" fills zeros (torchvision's F.affine, this project's fill before).
Keras warps twice (rotation, then zoom, each reflecting); one warp reflects once. The image is
resized to S first (antialiased), so the warp and everything after it run at the small size.

Random draws come only from the `rng` passed in (numpy Generator): never the global seed.
Every call draws the same four numbers, so changing one amount leaves the others' draws as
they were. Grey is replicated to 3 channels and normalised by mean/std (ImageNet by default).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from cxr.data.augment import AugmentConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(eq=False)
class EvalTransform:
    """Deterministic: antialiased resize to SxS, grey -> 3 channels, normalise. rng is ignored."""
    image_size: int
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __post_init__(self):
        size, mean, std = self.image_size, self.mean, self.std
        self.image_size = int(size)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values (std > 0), got {mean} / {std}")

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self._finish(self._resized(pixels))

    def _resized(self, pixels: np.ndarray) -> torch.Tensor:
        return resize(_as_tensor(pixels), self.image_size)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0).expand(3, -1, -1)  # never in place: x may share the caller's array
        return F.normalize(x, self.mean, self.std)  # returns a new contiguous tensor


@dataclass(eq=False)
class TrainTransform(EvalTransform):
    """Resize, random flip, rotation + zoom (one affine warp), brightness; normalise."""
    augment: AugmentConfig | None = None  # None: AugmentConfig(), the report's amounts

    def __post_init__(self):
        super().__post_init__()
        self.augment = self.augment if self.augment is not None else AugmentConfig()

    def draw(self, rng: np.random.Generator) -> dict:
        """The random parameters for one sample: always four draws, in this order."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("TrainTransform needs a numpy Generator "
                            "(np.random.default_rng([seed, epoch, index])), got "
                            f"{type(rng).__name__}")
        u = rng.random(4)
        a = self.augment
        return {"flip": bool(u[0] < a.hflip),
                "angle": float((2 * u[1] - 1) * a.rotation * 360.0),
                "scale": float(1.0 + (2 * u[2] - 1) * a.zoom),
                "brightness": float((2 * u[3] - 1) * a.brightness)}

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        p = self.draw(rng)
        x = self._resized(pixels)
        if p["flip"]:
            x = F.horizontal_flip(x)
        if (p["angle"] != 0.0 or p["scale"] != 1.0) and self.augment.fill_mode == "black":
            x = F.affine(x, angle=p["angle"], translate=[0, 0], scale=p["scale"], shear=[0.0, 0.0],
                         interpolation=InterpolationMode.BILINEAR, fill=0.0)
        elif p["angle"] != 0.0 or p["scale"] != 1.0:
            x = reflect_warp(x[None], torch.tensor([p["angle"]], dtype=torch.float64),
                             torch.tensor([p["scale"]], dtype=torch.float64))[0]
        if p["brightness"] != 0.0:
            x = x + p["brightness"]
        return self._finish(x)


def build_transform(preprocess: dict, train: bool, augment: AugmentConfig | None = None):
    """From a model's `preprocess` dict ({"input_size", "mean", "std"})."""
    size, mean, std = preprocess["input_size"], preprocess["mean"], preprocess["std"]
    return TrainTransform(size, mean, std, augment) if train else EvalTransform(size, mean, std)


def warp_matrices(angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B,) degrees and scales (float64) -> (B, 2, 3) float64: F.affine's inverse matrix
    (output -> input pixel, about the centre), [cos, sin, 0; -sin, cos, 0] / scale."""
    rad = torch.deg2rad(angle)
    cos, sin, zero = torch.cos(rad) / scale, torch.sin(rad) / scale, torch.zeros_like(angle)
    return torch.stack([cos, sin, zero, -sin, cos, zero], 1).view(-1, 2, 3)


def affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, 3) pixel-space matrices -> grid_sample's (B, S, S, 2) grid, computed as
    torchvision's F.affine computes its grid (pixel-centre coordinates times the matrix, then
    scaled to [-1, 1]), batched. torch's affine_grid gives the same points for a square image
    but rounds differently (up to 5e-5 of the [0, 1] range on noise); this way the batched
    path's result is bitwise F.affine's on the CPU."""
    centres = torch.linspace((1.0 - size) * 0.5, (size - 1.0) * 0.5, steps=size,
                             dtype=theta.dtype, device=theta.device)
    base = torch.stack([centres.expand(size, size), centres[:, None].expand(size, size),
                        torch.ones(size, size, dtype=theta.dtype, device=theta.device)], -1)
    to_unit = theta.transpose(1, 2) / (0.5 * size)  # torchvision divides by (w / 2, h / 2)
    points = base.view(1, size * size, 3).expand(len(theta), -1, -1).bmm(to_unit)
    return points.view(-1, size, size, 2)


def reflect_warp(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) float32 rotated by `angle` degrees and scaled by `scale` (float64 (B,),
    on any device) about the centre, bilinear, what falls outside reflected about the image's
    edge (Keras fill_mode="reflect"). The one implementation of both paths (BatchTransform)."""
    theta = warp_matrices(angle, scale).to(x.dtype).to(x.device, non_blocking=True)
    return torch.nn.functional.grid_sample(x, affine_grid(theta, x.shape[-1]), mode="bilinear",
                                           padding_mode="reflection", align_corners=False)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """1xHxW -> 1xSxS, bilinear with antialias (what `cxr prepare` stores, too)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.resize(x, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def resize_to_uint8(pixels: np.ndarray, size: int) -> np.ndarray:
    """float [0, 1] HxW -> uint8 SxS, rounded: the cache's storage format."""
    x = resize(_as_tensor(pixels), size)[0].numpy()
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"expected a greyscale HxW image, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]  # 1xHxW
