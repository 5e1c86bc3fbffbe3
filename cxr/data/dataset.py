"""CXRDataset: a torch Dataset over a metadata table (ARCHITECTURE.md, "Metadata table").

    >>> from cxr.data.dataset import CXRDataset
    >>> from cxr.data.transforms import TrainTransform
    >>> from cxr.data.cache import open_cache
    >>> ds = CXRDataset(table, TrainTransform(224), seed=0, cache=open_cache("data/demo", 256))
    >>> ds.set_epoch(3)                       # call every epoch (DataLoader workers too: see below)
    >>> image, target = ds[0]                 # 3x224x224 float32, float32[14]

The augmentation of sample i in epoch e comes from np.random.default_rng([seed, e, i]): the
same whatever the number of workers, their order, or the global seeds. Call `set_epoch` before
creating the epoch's iterator (with persistent_workers the workers keep their own copy).

The table needs `image` and `path`; the 14 FINDINGS columns are optional as a group (none:
targets are NaN, for label-free prediction). With a cache (`cxr prepare`), pixels come from the
memory-mapped array and PNGs are not decoded; every image must then be in the cache.

CachedUint8Dataset: the same over the cache, for augmentation on the device in batches
(cxr/data/batch_transforms.py).

    >>> ds = CachedUint8Dataset(table, TrainTransform(224), seed=0, cache=cache)
    >>> image, params, target = ds[0]         # uint8 SxS (the cache's S), float64[4], float32[14]
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxr.data.batch_transforms import params_tensor
from cxr.data.images import ImageLoadError, load_image
from cxr.labels import FINDINGS, NUM_CLASSES


class CXRDataset(Dataset):
    def __init__(self, table: pd.DataFrame, transform, seed: int = 0, cache=None):
        for column in ("image", "path"):
            if column not in table.columns:
                raise ValueError(f"dataset table has no {column!r} column "
                                 f"(columns: {list(table.columns)})")
        self.images = table["image"].astype(str).tolist()
        self.paths = table["path"].fillna("").astype(str).tolist()
        self.targets = _targets(table)
        self.transform, self.seed, self.cache, self.epoch = transform, int(seed), cache, 0
        missing = [n for n in self.images if n not in cache] if cache is not None else []
        if missing:
            raise ValueError(f"{len(missing)} of {len(self.images)} images are not in the image "
                             f"cache ({cache!r}), e.g. {missing[:3]}; rerun `cxr prepare --force` "
                             "or do not pass the cache")

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def pixels(self, index: int) -> np.ndarray:
        """float32 HxW in [0, 1]: from the cache when there is one, else decoded."""
        name = self.images[index]
        if self.cache is not None:
            return self.cache.get(name)
        if not self.paths[index]:
            raise ImageLoadError(f"{name}: no image file (empty path in the table: the file "
                                 "was missing when the metadata was read)")
        return load_image(self.paths[index]).pixels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.pixels(index)
        try:
            image = self.transform(pixels, self.rng(index))
        except Exception as exc:
            exc.add_note(f"while transforming {self.paths[index] or self.images[index]}")
            raise
        return image, torch.from_numpy(self.targets[index].copy())


class CachedUint8Dataset(CXRDataset):
    """Items (uint8 SxS as cached, float64[4] parameters in batch_transforms.PARAMS order,
    float32[14] target); a DataLoader stacks them into (B, S, S) uint8, (B, 4), (B, 14).
    The transform only draws (TrainTransform.draw); BatchTransform applies the draw later."""

    def __init__(self, table: pd.DataFrame, transform, seed: int = 0, cache=None):
        if cache is None:
            raise ValueError("CachedUint8Dataset reads the uint8 image cache, and none was given: "
                             "run `cxr prepare --data DIR` first")
        if not callable(getattr(transform, "draw", None)):
            raise TypeError(f"CachedUint8Dataset needs a transform that draws augmentation "
                            f"parameters (TrainTransform), got {type(transform).__name__}")
        super().__init__(table, transform, seed=seed, cache=cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.cache.get_uint8(self.images[index])))  # a copy
        params = params_tensor(self.transform.draw(self.rng(index)))
        return image, params, torch.from_numpy(self.targets[index].copy())


def _targets(table: pd.DataFrame) -> np.ndarray:
    present = [f for f in FINDINGS if f in table.columns]
    if not present:
        return np.full((len(table), NUM_CLASSES), np.nan, dtype=np.float32)
    if len(present) < NUM_CLASSES:
        missing = [f for f in FINDINGS if f not in table.columns]
        raise ValueError(f"dataset table has {len(present)} of the 14 finding columns; "
                         f"missing {missing} (give all 14 or none for label-free use)")
    return table[list(FINDINGS)].to_numpy(dtype=np.float32)
