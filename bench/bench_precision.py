"""Training images/s of each model at four precisions, side by side in one run: fp32,
channels_last, bf16 autocast, and both (what the trainer uses on CUDA and on CPUs with native
bf16, cxr/train/precision.py). One step = forward, focal loss in fp32, backward, Adam, every
parameter training (the demo's one end-to-end phase), on random tensors (bench_train.step_times).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python bench/bench_precision.py       # 128 px, batch 32
    python bench/bench_precision.py --write BENCHMARKS.md --machine "2-core AMD EPYC VM"
    python bench/bench_precision.py --models simple_cnn --size 32 --batch 4 --steps 2 \\
        --warmup 1 --rounds 1                                              # a smoke test

The variants are interleaved: each of `--rounds` rounds builds every variant afresh and times
`--steps` steps after `--warmup` untimed ones, so load changes on a shared machine hit all four
alike. images/s = batch / the median step over all rounds; "x fp32" is the ratio within the run.
On a CPU without native bf16 the bf16 columns measure emulation (the machine line says which).
`--write FILE` replaces (or appends) the "## CPU training precision" section of FILE.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from _report import write_section  # bench/_report.py (bench/ is on sys.path)
from bench_train import load_average, machine_line, step_times
from cxr.models import MODELS
from cxr.train.precision import BF16_FLAGS, Precision

SECTION = "## CPU training precision (bf16 autocast, channels_last)"
VARIANTS = {"fp32": (False, False), "channels_last": (False, True), "bf16": (True, False),
            "bf16 + channels_last": (True, True)}  # name: (bf16 autocast, channels_last)


def measure(name: str, args, device: torch.device) -> dict[str, float]:
    """images/s per variant for one model."""
    precisions = {variant: Precision(device.type, bf16=bf16, channels_last=channels_last)
                  for variant, (bf16, channels_last) in VARIANTS.items()}
    for precision in precisions.values():  # untimed: the first run of each kernel pays its setup
        step_times(name, "full", args.size, args.batch, 0, args.warmup, precision)
    times = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant, precision in precisions.items():
            times[variant] += step_times(name, "full", args.size, args.batch, args.steps,
                                         args.warmup, precision)
    return {variant: args.batch / statistics.median(t) for variant, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--machine", help="how to name the machine in the table")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    device = torch.device(args.device)
    flags = [flag for flag in BF16_FLAGS if torch.cpu.get_capabilities().get(flag)]
    native = f"native bf16 ({', '.join(flags)})" if flags else "no native bf16 (emulated)"
    machine = machine_line(device, args.machine) + (f"; {native}" if device.type == "cpu" else "")
    load_before = load_average()
    rows = []
    for name in args.models.split(","):
        rate = measure(name, args, device)
        cells = [f"{rate[v]:.1f}" + ("" if v == "fp32" else f" ({rate[v] / rate['fp32']:.2f}x)")
                 for v in VARIANTS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    text = (f"{SECTION}\n\n`python bench/bench_precision.py --size {args.size} --batch "
            f"{args.batch} --steps {args.steps} --rounds {args.rounds}` (random tensors, every "
            f"parameter training, focal loss in fp32, Adam; images/s from the median of "
            f"{args.steps * args.rounds} steps per cell, variants interleaved in {args.rounds} "
            f"round(s), ratios to fp32 in the same run). Machine: {machine}. Load average before "
            f"/ after: {load_before} / {load_average()}.\n\n"
            "| model | " + " | ".join(f"{v}, images/s" for v in VARIANTS) + " |\n"
            + "|---" * (len(VARIANTS) + 1) + "|\n" + "\n".join(rows) + "\n")
    print(text)
    if args.write:
        write_section(text, args.write)


if __name__ == "__main__":
    main()
