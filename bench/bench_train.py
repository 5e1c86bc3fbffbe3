"""Training throughput (images/s) of each registry model: one optimiser step = forward, focal
loss, backward, Adam, exactly as `cxr train` does it (cxr.train.phases), on random tensors so
only the model is measured (the data pipeline is benchmarked separately; see the image cache).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python bench/bench_train.py               # CPU, 128 px
    python bench/bench_train.py --size 224 --batch 32 --device cuda --steps 20  # a GPU
    python bench/bench_train.py --write BENCHMARKS.md --machine "2-core CPU dev VM, no GPU"

Two rows per model: "full" (every parameter trains: simple_cnn, random-init runs, phase 2)
and "head" (backbone frozen and in eval mode: phase 1). Median of `--steps` timed steps after
`--warmup` untimed ones. At the trainer's precision (cxr/train/precision.py): bf16 autocast and
channels_last on CUDA and on CPUs with native bf16, fp32 elsewhere; bench/bench_precision.py
compares the four precisions side by side.
`--write FILE` replaces (or appends) the "## Training throughput" section of FILE.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from cxr.losses import make_loss
from cxr.models import MODELS, create_model
from cxr.train import phases as ph
from cxr.train.config import TrainConfig
from cxr.train.precision import Precision, training_precision
from _report import write_section  # bench/_report.py (bench/ is on sys.path)

SECTION = "## Training throughput"


def step_times(name: str, mode: str, size: int, batch: int, steps: int, warmup: int,
               precision: Precision) -> list[float]:
    torch.manual_seed(0)
    device = torch.device(precision.device_type)
    model = create_model(name, input_size=size).to(device, memory_format=precision.memory_format)
    cuda = device.type == "cuda"
    phase = ph.Phase(mode, 1e-3, freeze_backbone=mode == "head")
    optimizer = ph.make_optimizer(ph.apply_freeze(model, phase), phase, TrainConfig())
    ph.set_train_mode(model, phase)
    loss_fn = make_loss("focal", alpha=0.25, gamma=2.0)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(
        memory_format=precision.memory_format)
    y = (torch.rand(batch, 14, device=device) < 0.1).float()
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with precision.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss)  # the trainer reads the loss every step (non-finite check)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def machine_line(device: torch.device, label: str | None) -> str:
    if label:
        name = label
    elif device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
    return (f"{name}; torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
            f"device {device}, {time.strftime('%Y-%m-%d')}")


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--machine", help="how to name the machine in the table")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = training_precision(device, amp=True, channels_last=True)
    machine = f"{machine_line(device, args.machine)}; {precision.name}"
    load_before = load_average()
    rows = []
    for name in args.models.split(","):
        for mode in ("full", "head"):
            if mode == "head" and not MODELS[name].pretrained:
                continue  # no ImageNet weights: trained end to end only
            times = step_times(name, mode, args.size, args.batch, args.steps, args.warmup,
                               precision)
            med = statistics.median(times)
            rows.append(f"| {name} | {mode} | {med * 1000:.0f} | {args.batch / med:.1f} | "
                        f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} |")
            print(rows[-1], flush=True)
    text = (f"{SECTION}\n\n`python bench/bench_train.py --size {args.size} --batch {args.batch} "
            f"--steps {args.steps}` (random tensors, focal loss, Adam; median of {args.steps} "
            f"steps after {args.warmup} warm-up). Machine: {machine}. Load average before / "
            f"after: {load_before} / {load_average()}.\n\n"
            "| model | trains | ms/step (median) | images/s | range ms |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(text)
    if args.write:
        write_section(text, args.write)


if __name__ == "__main__":
    main()
