"""cxr/data/dataset.py: items, targets, per-sample RNG independent of workers, cache reads."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import cxr.data.dataset as dataset_module
from cxr.data.cache import build_cache
from cxr.data.batch_transforms import BatchTransform, params_tensor
from cxr.data.dataset import CachedUint8Dataset, CXRDataset
from cxr.data.images import ImageLoadError, load_image
from cxr.data.transforms import EvalTransform, TrainTransform
from cxr.labels import FINDINGS

S = 24


def make_table(folder, n=4, labels=True) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:40, :40]
    rows = []
    for i in range(n):
        name = f"{i + 1:08d}_000.png"
        smooth = 0.5 + 0.4 * np.sin(xx / 6 + i) * np.cos(yy / 7)  # resampling-friendly
        Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / name)
        row = {"image": name, "path": str(folder / name), "patient": i + 1}
        if labels:
            row.update({f: int(j == i) for j, f in enumerate(FINDINGS)})
        rows.append(row)
    return pd.DataFrame(rows)


def test_item_is_image_and_float_target(tmp_path):
    table = make_table(tmp_path)
    ds = CXRDataset(table, EvalTransform(S))
    image, target = ds[2]
    assert len(ds) == 4 and image.shape == (3, S, S) and image.dtype == torch.float32
    assert target.dtype == torch.float32 and target.tolist() == [float(j == 2) for j in range(14)]


def test_without_label_columns_targets_are_nan(tmp_path):
    ds = CXRDataset(make_table(tmp_path, labels=False), EvalTransform(S))
    assert torch.isnan(ds[0][1]).all() and ds[0][1].shape == (14,)


def test_some_label_columns_missing_is_an_error(tmp_path):
    table = make_table(tmp_path).drop(columns=["Hernia", "Edema"])
    with pytest.raises(ValueError, match="Edema.*Hernia"):
        CXRDataset(table, EvalTransform(S))


def test_table_without_path_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="'path'"):
        CXRDataset(make_table(tmp_path).drop(columns=["path"]), EvalTransform(S))


def test_augmentation_comes_from_seed_epoch_index(tmp_path):
    table = make_table(tmp_path)
    ds = CXRDataset(table, TrainTransform(S), seed=3)
    ds.set_epoch(5)
    pixels = load_image(table["path"][1]).pixels
    expected = TrainTransform(S)(pixels, np.random.default_rng([3, 5, 1]))
    assert torch.equal(ds[1][0], expected) and torch.equal(ds[1][0], ds[1][0])
    ds.set_epoch(6)
    assert not torch.equal(ds[1][0], expected)
    other_seed = CXRDataset(table, TrainTransform(S), seed=4)
    other_seed.set_epoch(5)
    assert not torch.equal(other_seed[1][0], expected)


def test_same_batches_with_and_without_worker_processes(tmp_path):
    ds = CXRDataset(make_table(tmp_path), TrainTransform(S), seed=1)
    ds.set_epoch(2)
    serial = torch.cat([x for x, _ in DataLoader(ds, batch_size=2)])
    parallel = torch.cat([x for x, _ in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(serial, parallel)


def test_cache_replaces_decoding(tmp_path, monkeypatch):
    table = make_table(tmp_path / "images")
    cache, _ = build_cache(zip(table["image"], table["path"]), tmp_path / "cache", 32, 1,
                           progress=False)
    decoded = CXRDataset(table, EvalTransform(S))[3][0]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(dataset_module, "load_image", no_decoding)
    cached = CXRDataset(table, EvalTransform(S), cache=cache)[3][0]
    assert torch.equal(cached, EvalTransform(S)(cache.get(table["image"][3])))
    # 40 -> 32 (uint8) -> 24 differs from 40 -> 24 only by resampling and rounding.
    assert (cached - decoded).abs().max() < 0.1


def cached_table(tmp_path, n=4):
    table = make_table(tmp_path / "images", n)
    cache, _ = build_cache(zip(table["image"], table["path"]), tmp_path / "cache", 32, 1,
                           progress=False)
    return table, cache


def test_uint8_items_are_the_cached_pixels_and_the_cpu_paths_draw(tmp_path):
    table, cache = cached_table(tmp_path)
    ds = CachedUint8Dataset(table, TrainTransform(S), seed=3, cache=cache)
    ds.set_epoch(5)
    image, params, target = ds[1]
    assert image.dtype == torch.uint8 and image.shape == (32, 32)  # the cache's size, not S
    assert np.array_equal(image.numpy(), cache.get_uint8(table["image"][1]))
    expected = TrainTransform(S).draw(np.random.default_rng([3, 5, 1]))
    assert torch.equal(params, params_tensor(expected))
    assert target.tolist() == [float(j == 1) for j in range(14)]
    image[:] = 0  # a copy: the memory-mapped cache is read-only and must stay unchanged
    assert cache.get_uint8(table["image"][1]).any()


def test_uint8_batches_augmented_in_one_go_equal_the_per_image_dataset(tmp_path):
    table, cache = cached_table(tmp_path)
    per_image = CXRDataset(table, TrainTransform(S), seed=1, cache=cache)
    batched = CachedUint8Dataset(table, TrainTransform(S), seed=1, cache=cache)
    for ds in (per_image, batched):
        ds.set_epoch(2)
    expected, _ = next(iter(DataLoader(per_image, batch_size=4)))
    images, params, _ = next(iter(DataLoader(batched, batch_size=4, num_workers=2)))
    assert images.dtype == torch.uint8 and images.shape == (4, 32, 32) and params.shape == (4, 4)
    assert torch.equal(BatchTransform(S)(images, params), expected)


def test_uint8_dataset_needs_the_cache_and_a_drawing_transform(tmp_path):
    table, cache = cached_table(tmp_path)
    with pytest.raises(ValueError, match="cxr prepare"):
        CachedUint8Dataset(table, TrainTransform(S), cache=None)
    with pytest.raises(TypeError, match="EvalTransform"):
        CachedUint8Dataset(table, EvalTransform(S), cache=cache)


def test_images_missing_from_cache_are_an_error_at_construction(tmp_path):
    table = make_table(tmp_path / "images")
    cache, _ = build_cache(zip(table["image"][:2], table["path"][:2]), tmp_path / "cache", 32,
                           1, progress=False)
    with pytest.raises(ValueError, match=r"2 of 4 images are not in the image cache.*00000003"):
        CXRDataset(table, EvalTransform(S), cache=cache)


def test_missing_and_corrupt_files_are_named(tmp_path):
    table = make_table(tmp_path)
    table.loc[0, "path"] = ""
    (tmp_path / "00000002_000.png").write_bytes(b"garbage")
    ds = CXRDataset(table, EvalTransform(S))
    with pytest.raises(ImageLoadError, match="00000001_000.png: no image file"):
        ds[0]
    with pytest.raises(ImageLoadError, match="00000002_000.png"):
        ds[1]


def test_transform_errors_name_the_file(tmp_path):
    def broken(pixels, rng):
        raise RuntimeError("boom")

    ds = CXRDataset(make_table(tmp_path), broken)
    with pytest.raises(RuntimeError, match="boom") as info:
        ds[0]
    assert any("00000001_000.png" in note for note in info.value.__notes__)
