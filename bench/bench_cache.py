"""Benchmark: CXRDataset images/s decoding PNGs vs reading the `cxr prepare` cache.

    .venv/bin/python bench/bench_cache.py                 # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_cache.py --repeats 7 --no-write

Same images, one run, side by side: the 56 real 1024x1024 NIH PNGs when ../shared/data/nih
exists (else 56 generated 1024x1024 PNGs), a 256 px cache built in a temporary folder, and
CXRDataset at the training size 224 with the train and the eval transform. One process, one
torch thread: what a single DataLoader worker does. Each repeat is a full pass over the
images; configurations take turns within a repeat so machine load hits all of them alike.
The table reports the median images/s over the repeats and cache / PNG ratios.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxr.data.cache import build_cache  # noqa: E402
from cxr.data.dataset import CXRDataset  # noqa: E402
from cxr.data.transforms import EvalTransform, TrainTransform  # noqa: E402
from _report import write_section  # noqa: E402 (bench/_report.py; bench/ is on sys.path)

NIH_DIR = Path(os.environ.get("CXR_NIH_DIR", REPO.parent / "shared" / "data" / "nih"))
NIH_IMAGES = NIH_DIR / "images"
SECTION = "## Image cache (`cxr prepare`)"
MACHINE = "2-core CPU dev VM, no GPU"


def source_images(tmp: Path) -> tuple[list[tuple[str, str]], str]:
    if NIH_IMAGES.is_dir():
        paths = sorted(NIH_IMAGES.glob("*.png"))
        described = f"{len(paths)} real NIH ChestX-ray14 PNGs, 1024x1024"
        return [(p.name, str(p)) for p in paths], described
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:1024, :1024] / 1024.0
    items = []
    for i in range(56):  # smooth anatomy-like shading + noise: compresses like a radiograph
        img = 0.5 + 0.3 * np.sin(6 * xx + i) * np.cos(5 * yy) + rng.normal(0, 0.03, xx.shape)
        path = tmp / f"{i + 1:08d}_000.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
        items.append((path.name, str(path)))
    return items, "56 generated 1024x1024 PNGs (real NIH sample not found)"


def images_per_second(ds: CXRDataset) -> float:
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - start)


def measure(items, cache, size: int, repeats: int) -> dict[tuple[str, str], list[float]]:
    table = pd.DataFrame({"image": [n for n, _ in items], "path": [p for _, p in items]})
    transforms = {"train": TrainTransform(size), "eval": EvalTransform(size)}
    datasets = {(mode, source): CXRDataset(table, t, seed=0, cache=c)
                for mode, t in transforms.items()
                for source, c in (("png", None), ("cache", cache))}
    for ds in datasets.values():  # warm-up: page cache, allocator, lazy imports
        images_per_second(ds)
    rates = {key: [] for key in datasets}
    for repeat in range(repeats):
        for key, ds in datasets.items():
            ds.set_epoch(repeat)
            rates[key].append(images_per_second(ds))
    return rates


def report(rates, described: str, prepare_s: float, n: int, cache_size: int, size: int,
           repeats: int) -> str:
    lines = [SECTION, "",
             f"`.venv/bin/python bench/bench_cache.py` on a {MACHINE} "
             f"({platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}, torch {torch.__version__.split('+')[0]}, "
             f"1 torch thread, one process = one DataLoader worker), {time.strftime('%Y-%m-%d')}, "
             f"load average {os.getloadavg()[0]:.1f} (machine shared with other jobs).",
             f"Images: {described}. CXRDataset at {size} px; cache built by `cxr prepare` at "
             f"{cache_size} px (uint8 memmap) in {prepare_s:.1f} s for {n} images "
             f"({n / prepare_s:.1f} images/s, all cores). Median of {repeats} full passes, "
             "configurations interleaved in one run.", "",
             "| transform | decode PNG (images/s) | read cache (images/s) | cache / PNG |",
             "|---|---:|---:|---:|"]
    for mode in ("train", "eval"):
        png, cached = (statistics.median(rates[(mode, s)]) for s in ("png", "cache"))
        lines.append(f"| {mode} | {png:.1f} | {cached:.1f} | {cached / png:.1f}x |")
    lines += ["", "Decoding a 1024x1024 PNG dominates an uncached epoch; with the cache the "
              "transform itself is the cost. The shared VM is noisy: compare the ratio, measured "
              "side by side, rather than absolute rates across runs.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224, help="training image size")
    parser.add_argument("--cache-size", type=int, default=256)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items, described = source_images(Path(tmp))
        start = time.perf_counter()
        cache, _ = build_cache(items, Path(tmp) / "cache", args.cache_size, progress=False)
        prepare_s = time.perf_counter() - start
        torch.set_num_threads(1)
        rates = measure(items, cache, args.size, args.repeats)
        text = report(rates, described, prepare_s, len(items), args.cache_size, args.size,
                      args.repeats)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
