"""The data side of a run: split (made or loaded, copied into RUN_DIR), datasets, loaders.

The split is made from the metadata alone (every Data_Entry row), so the same seed gives the
same split on every machine whether or not all images are downloaded; images that are not on
disk are then dropped from train/val, with a logged count. The test split is never loaded here.

Training order: torch's DistributedSampler (also with one process: the permutation depends only
on seed + epoch), wrapped so an epoch can resume after its first `skip` batches and stop after
`max_steps_per_epoch`. Each index travels with its epoch to the worker (`EpochSampler`), so
augmentation stays per (seed, epoch, index) with persistent workers too.

Augmentation runs per image in the workers (CXRDataset + TrainTransform), or, with
`gpu_augment` (`use_gpu_augment`), on the device in batches: the workers only copy uint8 images
out of the cache and draw each sample's parameters (CachedUint8Dataset), and `device_batch`
applies them there (BatchTransform). Both give each sample the same augmentation.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cxr.labels import FINDINGS
from cxr.rundir import RunDir


@dataclass
class SplitInfo:
    frame: pd.DataFrame          # image, patient, split
    meta: dict                   # the sidecar: strategy, seed, content_hash, ...
    path: Path                   # RUN_DIR/split.csv
    source: str                  # where it came from: "made" or the original CSV path

    def summary(self) -> dict:
        """The checkpoint's meta["split"]."""
        keys = ("content_hash", "strategy", "seed", "patient_fraction", "fractions")
        return {"path": str(self.path), "source": self.source,
                **{key: self.meta.get(key) for key in keys}}


def write_split(cfg, files, table: pd.DataFrame, run_dir: Path) -> str:
    """Rank 0: copy cfg.split_path into RUN_DIR/split.csv (+ sidecar), or make the split from
    the config and save it there. Returns the source description."""
    from cxr.data.layout import data_version
    from cxr.data.splits import load_split, save_split, split_report

    target = RunDir(run_dir).split
    if cfg.split_path:
        source = Path(cfg.split_path)
        load_split(source)  # checks the hash before we copy it
        shutil.copyfile(source, target)
        shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))
        return str(source.resolve())
    frame = made_split(cfg, files, table)
    meta = {"strategy": cfg.split_strategy, "seed": cfg.split_seed,
            "patient_fraction": cfg.patient_fraction, "fractions": list(cfg.split_fractions),
            "data_version": data_version(files.data_entry), "report": split_report(frame, table)}
    save_split(frame, target, meta)
    return "made"


def made_split(cfg, files, table: pd.DataFrame) -> pd.DataFrame:
    """The split the config describes, made from the metadata (`cxr.data.splits.make_split`)."""
    from cxr.data.splits import make_split
    return make_split(table, cfg.split_strategy, seed=cfg.split_seed,
                      fractions=cfg.split_fractions, patient_fraction=cfg.patient_fraction,
                      train_val_list=files.train_val_list, test_list=files.test_list)


def read_split(run_dir: Path, source: str) -> SplitInfo:
    from cxr.data.splits import load_split
    path = RunDir(run_dir).split
    frame, meta = load_split(path)
    return SplitInfo(frame, meta, path, source)


def split_tables(table: pd.DataFrame, split: SplitInfo, log) -> dict[str, pd.DataFrame]:
    """train / val rows of the metadata table with images on disk (test is not touched)."""
    from cxr.data.splits import attach_split
    joined = attach_split(table, split.frame)
    out = {}
    for name in ("train", "val"):
        part = joined[joined["split"] == name]
        present = part[part["path"].astype(str) != ""]
        if len(present) < len(part):
            log(f"{name}: {len(part) - len(present)} of {len(part)} images are not on disk "
                "and are left out")
        if present.empty:
            raise ValueError(f"the {name} split has no images on disk (split {split.path}, "
                             f"{len(part)} rows): check --data / images folder")
        out[name] = present.reset_index(drop=True)
    return out


def find_cache(data_dir: str | Path, image_size: int):
    """The prepared cache (`cxr prepare`) at image_size, else the smallest one larger than it
    (resizing 256 -> 128 is cheap, decoding a PNG is not), else None."""
    from cxr.data.cache import open_cache
    cache_dir = Path(data_dir) / "cache"
    sizes = sorted(int(m.group(1)) for p in cache_dir.glob("images_*.json")
                   if (m := re.fullmatch(r"images_(\d+)\.json", p.name)))
    usable = [s for s in sizes if s >= image_size]
    return open_cache(data_dir, usable[0]) if usable else None


class EpochDataset(Dataset):
    """Items are fetched as (epoch, index) pairs: the worker sets the epoch on its own copy."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class EpochSampler(Sampler):
    """This rank's indices for one epoch, as (epoch, index), minus the first `skip` batches and
    capped at `max_batches` batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int,
                 max_batches: int | None = None):
        self.inner = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                        seed=seed, drop_last=False)
        self.batch_size, self.max_batches = batch_size, max_batches
        self.epoch, self.skip = 0, 0

    def batches(self) -> int:
        """Batches per epoch (the same on every rank: DistributedSampler pads ranks equally)."""
        full = math.ceil(self.inner.num_samples / self.batch_size)
        return min(full, self.max_batches) if self.max_batches else full

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches
        self.inner.set_epoch(epoch)

    def _indices(self) -> list[int]:
        return list(self.inner)[self.skip * self.batch_size:self.batches() * self.batch_size]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self._indices()])

    def __len__(self) -> int:
        return len(self._indices())


def use_gpu_augment(mode: str, device: torch.device, cache) -> bool:
    """The config's gpu_augment: auto = on for CUDA with the image cache, else off; on needs
    the cache (any device: the tests force it on the CPU)."""
    if mode == "on" and cache is None:
        raise ValueError("gpu_augment=on augments batches of the uint8 image cache, and the "
                         "data folder has none at or above the training size: run `cxr prepare "
                         "--data DIR --size N` (N >= image_size), or set gpu_augment=auto or off")
    return (device.type == "cuda" and cache is not None) if mode == "auto" else mode == "on"


def device_batch(batch, device: torch.device, transform=None,
                 memory_format: torch.memory_format = torch.contiguous_format):
    """A loader batch -> (x, y) on the device. Without `transform` the batch is (x, y) as the
    per-image transforms made it. With one (a BatchTransform) it is (uint8 images, params, y)
    from CachedUint8Dataset: the images go over as uint8 (a quarter of float32's bytes) and are
    augmented there; the params stay on the CPU (the transform computes its matrices there)."""
    if transform is None:
        x, y = batch
        x = x.to(device, non_blocking=True)
    else:
        images, params, y = batch
        x = transform(images.to(device, non_blocking=True), params)
    return x.contiguous(memory_format=memory_format), y.to(device, non_blocking=True)


def default_workers(world_local: int) -> int:
    """Leave one core per process for the training step itself."""
    cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world_local) - 1))


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process: Ctrl-C reaches the whole
    process group, and a worker dying of it would crash the step instead of stopping cleanly.
    Workers still exit with the main process (DataLoader watches its parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset, batch_size: int, sampler=None, workers: int = 0, pin: bool = False,
                seed: int = 0) -> DataLoader:
    # A private generator: creating an iterator must not draw from the global torch RNG,
    # or a resumed run's dropout stream would shift by one draw.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      drop_last=False, generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=ignore_stop_signals if workers > 0 else None)


def targets_of(table: pd.DataFrame) -> np.ndarray:
    return table[list(FINDINGS)].to_numpy(dtype=np.float32)
