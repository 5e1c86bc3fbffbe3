"""BatchTransform: TrainTransform's augmentation applied to a whole batch on its device (a GPU).

    >>> import numpy as np, torch
    >>> from cxr.data.batch_transforms import BatchTransform, params_tensor
    >>> from cxr.data.transforms import TrainTransform
    >>> train = TrainTransform(224)
    >>> params = torch.stack([params_tensor(train.draw(np.random.default_rng([seed, epoch, i])))
    ...                       for i in indices])                        # (B, 4) float64, on the CPU
    >>> x = BatchTransform.like(train)(images_u8.cuda(non_blocking=True), params)  # B,3,224,224

Training with `gpu_augment` (cxr/train/config.py) ships the uint8 cache (`cxr prepare`) to the
device as it is stored, (B, S0, S0) or (B, 1, S0, S0), together with each sample's four
augmentation parameters (CachedUint8Dataset draws them in the DataLoader workers), and runs this
there instead of TrainTransform per image in CPU workers. The steps are TrainTransform's, in its
order (`__call__`). Each sample is transformed on its own: its output does not depend on the
others in the batch.

The parameters are TrainTransform.draw(np.random.default_rng([seed, epoch, index])), the very
numbers the CPU path uses for that sample; nothing here draws random numbers, so the global
torch RNG (dropout) is not touched. The per-sample matrices are computed in float64 where the
parameters are (keep them on the CPU: MPS has no float64) and moved to the images' device.

Compared with TrainTransform on the same sample (tests/data/test_batch_transforms.py):
- the parameters are bitwise the same (the same draw);
- on the CPU the output is bitwise the same: every step is the same torch operation on the
  same values, the warp's sampling grid included (fill_mode "black": built as torchvision's
  F.affine builds it; "reflect", the default: transforms.reflect_warp, on both paths);
- on CUDA the resize and grid_sample kernels are CUDA's, so expect rounding-level differences
  from the CPU path (not measured: no GPU was available when this was written). Each sample is
  still independent of the batch, and a run should repeat itself on the same GPU and software:
  torch lists only the backward passes of grid_sample and interpolate as nondeterministic on
  CUDA, and this runs forward only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

from cxr.data.augment import FILL_MODES
from cxr.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, affine_grid,
                                 reflect_warp, resize, warp_matrices)

PARAMS = ("flip", "angle", "scale", "brightness")  # the columns of a params tensor
_TO_UNIT = 1.0 / 255.0  # float32 in the kernel: ImageCache.get's np.float32(1 / 255)


def params_tensor(params: dict) -> torch.Tensor:
    """TrainTransform.draw's dict -> float64[4] in PARAMS order (flip as 1.0 / 0.0)."""
    return torch.tensor([float(params[name]) for name in PARAMS], dtype=torch.float64)


class BatchTransform:
    """(uint8 images (B, S0, S0) or (B, 1, S0, S0), params (B, 4)) -> (B, 3, S, S) float32,
    normalised, on the images' device. Identity parameters (0, 0, 1, 0) give EvalTransform."""

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 fill_mode: str = "reflect"):
        spec = EvalTransform(image_size, mean, std)  # checks the values the same way
        self.image_size, self.mean, self.std = spec.image_size, spec.mean, spec.std
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        self.fill_mode = fill_mode

    @classmethod
    def like(cls, transform: EvalTransform) -> "BatchTransform":
        """The batched form of a TrainTransform (or EvalTransform): same size, mean, std and
        fill mode."""
        augment = getattr(transform, "augment", None)
        return cls(transform.image_size, transform.mean, transform.std,
                   augment.fill_mode if augment is not None else "reflect")

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x = _unit_float(images)
        flip, angle, scale, brightness = _checked(params, len(x)).unbind(1)
        x = resize(x, self.image_size)
        x = torch.where(_per_sample(flip != 0, x), x.flip(-1), x)
        x = _warp(x, angle, scale, self.fill_mode)
        x = x + _per_sample(brightness.to(x.dtype), x)  # float32 first: MPS has no float64
        x = x.clamp(0.0, 1.0).expand(-1, 3, -1, -1)
        return F.normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image_size={self.image_size}, mean={self.mean}, "
                f"std={self.std}, fill_mode={self.fill_mode!r})")


def _unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 1, H, W) -> float32 (B, 1, H, W) in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError("BatchTransform expects the uint8 image cache's pixels, got "
                        f"{images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[-1] != images.shape[-2]:
        raise ValueError("BatchTransform expects square greyscale images (B, S, S) or "
                         f"(B, 1, S, S), got shape {tuple(images.shape)}")
    return images.to(torch.float32).mul_(_TO_UNIT)


def _checked(params: torch.Tensor, batch: int) -> torch.Tensor:
    if params.ndim != 2 or params.shape != (batch, len(PARAMS)):
        raise ValueError(f"params must be ({batch}, {len(PARAMS)}) for {batch} images "
                         f"({', '.join(PARAMS)}), got shape {tuple(params.shape)}")
    return params.to(torch.float64)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) on x's device, to broadcast over each sample's pixels."""
    return values.view(-1, 1, 1, 1).to(x.device, non_blocking=True)


def _warp(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor,
          fill_mode: str) -> torch.Tensor:
    """Per sample: TrainTransform's warp. "black": torchvision F.affine(x, angle, translate=0,
    scale, shear=0, BILINEAR, fill=0); "reflect": transforms.reflect_warp, the CPU path's own."""
    if fill_mode == "reflect":
        warped = reflect_warp(x, angle, scale)
    else:
        # F.affine's matrix in float64 as its math.cos computes it, then float32
        theta = warp_matrices(angle, scale)
        grid = affine_grid(theta.to(x.dtype).to(x.device, non_blocking=True), x.shape[-1])
        # A channel of ones warped alongside says how much of each output pixel the image
        # covers; F.affine multiplies by it for fill=0, so edges fade to black as on the CPU.
        sampled = nnf.grid_sample(torch.cat([x, torch.ones_like(x)], 1), grid, mode="bilinear",
                                  padding_mode="zeros", align_corners=False)
        warped = sampled[:, :1] * sampled[:, 1:]
    moved = _per_sample((angle != 0) | (scale != 1), x)  # the CPU path skips the identity warp
    return torch.where(moved, warped, x)
