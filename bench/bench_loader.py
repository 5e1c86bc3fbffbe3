"""Benchmark: loader-only images/s at 224 px from the uint8 cache, per-image augmentation in CPU
workers vs uint8 batches augmented in one go (`gpu_augment`), side by side in one run.

    .venv/bin/python bench/bench_loader.py                          # print the table only
    .venv/bin/python bench/bench_loader.py --write                  # and write BENCHMARKS.md
    .venv/bin/python bench/bench_loader.py --images 128 --repeats 1 # a quick check

Images: the 56 real 1024x1024 NIH PNGs when ../shared/data/nih exists (else 56 generated ones),
cached by `cxr prepare`'s build_cache at 256 px in a temporary folder; the table lists them
over and over to --images rows (the cache's pages stay in memory: this measures the pipeline,
not the disk). Each configuration is the training code's own (cxr/train/data.py): EpochSampler,
EpochDataset, make_loader with W persistent workers, batches of --batch, then device_batch,
which puts the batch on the training device, so the time includes the host-to-device copy:
  cpu workers       CXRDataset + TrainTransform per image in the workers (gpu_augment=off);
                    float32 3x224x224 batches are copied to the device
  batched, DEVICE   CachedUint8Dataset in the workers (copy the uint8 image, draw the
                    parameters); uint8 256x256 batches go to DEVICE and BatchTransform
                    augments them there (gpu_augment=on). DEVICE is cuda when there is one,
                    and always also "cpu tensors" (the transform in the main process on the
                    CPU, a label for what it is: no GPU involved)
The clock stops when the device has finished (torch.cuda.synchronize). Models are not run.
One untimed pass per configuration first (workers start, caches warm); then --repeats timed
passes, configurations taking turns within a repeat so machine load hits them alike; the
table gives the median images/s. Without CUDA the GPU row says "not measured". The main
process uses torch's default threads (OMP_NUM_THREADS=1 ... gives it one); workers use one.
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

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxr.data.batch_transforms import BatchTransform  # noqa: E402
from cxr.data.cache import build_cache  # noqa: E402
from cxr.data.dataset import CachedUint8Dataset, CXRDataset  # noqa: E402
from cxr.data.transforms import TrainTransform  # noqa: E402
from cxr.labels import FINDINGS  # noqa: E402
from cxr.train.data import EpochDataset, EpochSampler, device_batch, make_loader  # noqa: E402
from bench_cache import source_images  # noqa: E402  (bench/ is on sys.path)
from _report import write_section  # noqa: E402

SECTION = "## Loader: CPU workers vs batched augmentation (`gpu_augment`)"


class Config:
    """One loader configuration: its dataset, loader and what happens on the device."""

    def __init__(self, path: str, device: torch.device, workers: int, table, cache,
                 size: int, batch: int, pin: bool):
        train = TrainTransform(size)
        self.path, self.device, self.workers = path, device, workers
        if path == "cpu workers":
            dataset, self.transform = CXRDataset(table, train, seed=0, cache=cache), None
        else:
            dataset = CachedUint8Dataset(table, train, seed=0, cache=cache)
            self.transform = BatchTransform.like(train)
        self.sampler = EpochSampler(len(dataset), batch, seed=0, rank=0, world=1)
        self.loader = make_loader(EpochDataset(dataset), batch, self.sampler, workers, pin, 0)

    @property
    def label(self) -> str:
        if self.path == "cpu workers":
            return f"per image on the CPU (today's path), float32 to {self.device.type}"
        return "batched on GPU" if self.device.type == "cuda" else "batched on CPU tensors"

    def images_per_second(self, epoch: int) -> float:
        self.sampler.set_epoch(epoch)
        cuda = self.device.type == "cuda"
        start, n = time.perf_counter(), 0
        for batch in self.loader:
            x, y = device_batch(batch, self.device, self.transform)
            n += len(y)
        if cuda:
            torch.cuda.synchronize(self.device)
        return n / (time.perf_counter() - start)


def configurations(args, table, cache) -> list[Config]:
    cuda = torch.cuda.is_available()
    train_device = torch.device("cuda" if cuda else "cpu")  # where training would run
    batched = [torch.device("cuda")] if cuda else []
    batched.append(torch.device("cpu"))
    configs = []
    for workers in args.workers:
        configs.append(Config("cpu workers", train_device, workers, table, cache, args.size,
                              args.batch, pin=cuda))
        configs += [Config("batched", device, workers, table, cache, args.size, args.batch,
                           pin=device.type == "cuda") for device in batched]
    return configs


def measure(configs: list[Config], repeats: int) -> dict[int, list[float]]:
    for config in configs:  # untimed: start workers, warm caches and CUDA
        config.images_per_second(epoch=0)
    rates = {i: [] for i in range(len(configs))}
    for repeat in range(repeats):
        for i, config in enumerate(configs):
            rates[i].append(config.images_per_second(epoch=1 + repeat))
    return rates


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
           else "no GPU (CUDA not available)")
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__.split('+')[0]}, {torch.get_num_threads()} torch "
            f"thread(s) in the main process, 1 per worker")


def report(configs, rates, args, described: str, command: str, load: tuple) -> str:
    lines = [SECTION, "",
             f"`{command}` on {machine()}, {time.strftime('%Y-%m-%d')}, load average before / "
             f"after {load[0]:.1f} / {load[1]:.1f}.",
             f"Images: {described}, cached at {args.cache_size} px (uint8), listed to "
             f"{args.images} rows; TrainTransform's default augmentation at {args.size} px, "
             f"batches of {args.batch}; median images/s of {args.repeats} timed pass(es) after "
             "one untimed pass, configurations interleaved. Loader only: no model runs.", "",
             "| where the augmentation runs | workers | images/s "
             "| vs per-image CPU, same workers |",
             "|---|---:|---:|---:|"]
    baseline = {}
    for i, config in enumerate(configs):
        rate = statistics.median(rates[i])
        if config.path == "cpu workers":
            baseline[config.workers] = rate
        ratio = rate / baseline[config.workers]
        lines.append(f"| {config.label} | {config.workers} | {rate:.1f} | {ratio:.2f}x |")
    if not torch.cuda.is_available():
        lines.append("| batched on GPU | - | not measured (no GPU on this machine) | - |")
    size = args.size
    lines += ["", f"Bytes to the device per image: float32 3x{size}x{size} = {12 * size ** 2:,} "
              f"(per-image path) vs uint8 {args.cache_size}x{args.cache_size} = "
              f"{args.cache_size ** 2:,} (batched). \"Batched on CPU tensors\" runs the GPU "
              "path's code in the main process on the CPU: it shows the code works and what "
              "batching alone does, not what a GPU does."]
    if max(load) > (os.cpu_count() or 1):
        lines.append(f"The machine was busy (load average above its {os.cpu_count()} cores): "
                     "these rates are noisy. Rerun on a quiet machine, with more --images "
                     "and --repeats, before reading anything into them.")
    return "\n".join(lines + [""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="rows per pass")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224, help="training image size")
    parser.add_argument("--cache-size", type=int, default=256)
    parser.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()
    command = "python bench/bench_loader.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        items, described = source_images(Path(tmp))
        cache, _ = build_cache(items, Path(tmp) / "cache", args.cache_size, progress=False)
        names = [items[i % len(items)][0] for i in range(args.images)]
        table = pd.DataFrame({"image": names, "path": "",
                              **{f: 0 for f in FINDINGS}})  # labels are not what is measured
        configs = configurations(args, table, cache)
        rates = measure(configs, args.repeats)
        text = report(configs, rates, args, described, command.strip(),
                      (load_before, os.getloadavg()[0]))
        configs.clear()  # persistent workers end before their cache file goes
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
