"""cxr/data/cache.py: `cxr prepare` writes a correct, atomic, reusable uint8 memmap cache."""
from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr.cli import main
from cxr.data.cache import CachePaths, build_cache, open_cache
from cxr.data.images import ImageLoadError, load_image
from cxr.data.transforms import resize_to_uint8

SIZE = 16


def write_images(folder, n=5, seed=0) -> list[tuple[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        name = f"{i + 1:08d}_000.png"
        Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(folder / name)
        items.append((name, str(folder / name)))
    return items


def leftovers(cache_dir) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if ".tmp-" in p.name)


def test_build_stores_resized_uint8_and_reads_back(tmp_path):
    items = write_images(tmp_path / "images")
    cache, built = build_cache(items[::-1], tmp_path / "cache", SIZE, workers=1,
                               data_version="v1", progress=False)
    assert built and len(cache) == 5 and cache.names == sorted(n for n, _ in items)
    for name, path in items:
        expected = resize_to_uint8(load_image(path).pixels, SIZE)
        assert np.array_equal(cache.get_uint8(name), expected)
        got = cache.get(name)
        assert got.dtype == np.float32 and np.allclose(got, expected / 255.0)
    paths = CachePaths.of(tmp_path / "cache", SIZE)
    assert paths.data.stat().st_size == 5 * SIZE * SIZE
    meta = json.loads(paths.meta.read_text())
    assert meta["size"] == SIZE and meta["count"] == 5 and meta["data_version"] == "v1"
    assert pd.read_csv(paths.index)["row"].tolist() == list(range(5))
    assert leftovers(tmp_path / "cache") == []


def test_unknown_image_is_a_key_error_naming_it(tmp_path):
    cache, _ = build_cache(write_images(tmp_path / "images", 2), tmp_path / "c", SIZE, 1,
                           progress=False)
    assert "00000001_000.png" in cache and "other.png" not in cache
    with pytest.raises(KeyError, match="other.png"):
        cache.get("other.png")


def test_up_to_date_cache_is_kept_unless_forced_or_stale(tmp_path):
    items = write_images(tmp_path / "images", 3)
    build = lambda **kw: build_cache(items, tmp_path / "c", SIZE, 1, progress=False,  # noqa: E731
                                     **kw)[1]
    assert build(data_version="v1")
    assert not build(data_version="v1")  # unchanged: kept
    assert build(data_version="v1", force=True)
    assert build(data_version="v2")  # metadata changed
    # An image replaced in place (new content, size and mtime) triggers a rebuild with it.
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(items[1][1])
    os.utime(items[1][1], ns=(1, 1))
    cache, built = build_cache(items, tmp_path / "c", SIZE, 1, data_version="v2", progress=False)
    assert built and (cache.get_uint8(items[1][0]) == 255).all()
    cache, built = build_cache(items[:2], tmp_path / "c", SIZE, 1, data_version="v2",
                               progress=False)
    assert built and len(cache) == 2  # image set changed


def test_unreadable_image_fails_listing_it_and_keeps_the_old_cache(tmp_path):
    items = write_images(tmp_path / "images", 3)
    build_cache(items, tmp_path / "c", SIZE, 1, progress=False)
    (tmp_path / "images" / "00000002_000.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageLoadError, match=r"(?s)1 of 3 images.*00000002_000\.png"):
        build_cache(items, tmp_path / "c", SIZE, 1, progress=False)
    assert leftovers(tmp_path / "c") == []
    assert len(open_cache(None, SIZE, cache_dir=tmp_path / "c")) == 3  # previous cache intact


def test_open_cache_none_when_absent_error_when_inconsistent(tmp_path):
    assert open_cache(tmp_path, SIZE) is None
    build_cache(write_images(tmp_path / "images", 2), tmp_path / "cache", SIZE, 1,
                progress=False)
    assert len(open_cache(tmp_path, SIZE)) == 2 and open_cache(tmp_path, SIZE * 2) is None
    data = CachePaths.of(tmp_path / "cache", SIZE).data
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(ValueError, match="inconsistent"):
        open_cache(tmp_path, SIZE)
    items = write_images(tmp_path / "images", 2)
    cache, built = build_cache(items, tmp_path / "cache", SIZE, 1, progress=False)
    assert built and len(cache) == 2  # `prepare` repairs a damaged cache


def test_cache_pickles_without_its_pixels(tmp_path):
    cache, _ = build_cache(write_images(tmp_path / "images", 4), tmp_path / "c", 64, 1,
                           progress=False)
    cache.get("00000001_000.png")  # maps the array
    blob = pickle.dumps(cache)
    assert len(blob) < 4 * 64 * 64  # DataLoader workers get the path, not the data
    assert np.array_equal(pickle.loads(blob).get("00000003_000.png"),
                          cache.get("00000003_000.png"))


def test_worker_processes_give_the_same_cache(tmp_path):
    items = write_images(tmp_path / "images", 6)
    one, _ = build_cache(items, tmp_path / "c1", SIZE, workers=1, progress=False)
    two, _ = build_cache(items, tmp_path / "c2", SIZE, workers=2, progress=False)
    assert all(np.array_equal(one.get_uint8(n), two.get_uint8(n)) for n, _ in items)


def write_dataset_dir(root, n=4):
    items = write_images(root / "images", n)
    pd.DataFrame({"Image Index": [name for name, _ in items] + ["99999999_000.png"],
                  "Finding Labels": "No Finding", "Follow-up #": 0,
                  "Patient ID": range(1, n + 2), "Patient Age": 50, "Patient Gender": "F",
                  "View Position": "PA"}).to_csv(root / "Data_Entry_2017.csv", index=False)
    return items


def test_cli_prepare_writes_dir_cache_then_keeps_it(tmp_path, capsys):
    items = write_dataset_dir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the listed-but-absent image is dropped with a warning
        assert main(["prepare", "--data", str(tmp_path), "--size", "16", "--workers", "1"]) == 0
        assert "4 images at 16 px, built" in capsys.readouterr().out
        assert main(["prepare", "--data", str(tmp_path), "--size", "16", "--workers", "1"]) == 0
        assert "up to date" in capsys.readouterr().out
    cache = open_cache(tmp_path, 16)
    assert cache.names == [name for name, _ in items]
    assert cache.meta["data_version"].startswith("Data_Entry_2017.csv sha256:")


def test_cli_prepare_bad_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_prepare_real_nih_images(nih_dir, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 112,064 listed images are not in the 56-image sample
        assert main(["prepare", "--data", str(nih_dir), "--cache-dir", str(tmp_path),
                     "--size", "32", "--workers", "1"]) == 0
    cache = open_cache(nih_dir, 32, cache_dir=tmp_path)
    assert len(cache) == 56
    name = cache.names[0]
    expected = resize_to_uint8(load_image(nih_dir / "images" / name).pixels, 32)
    assert np.array_equal(cache.get_uint8(name), expected)
