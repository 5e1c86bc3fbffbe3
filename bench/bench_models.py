"""CPU cost of each registry model: one forward pass vs 25-pass MC dropout, fast and naive.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_models.py            # writes BENCHMARKS.md
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_models.py --threads 1 --naive-repeats 2
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_models.py --models simple_cnn --no-write

For each model (random init, eval mode, no grad) and one fixed batch, each repeat times, back to
back: a plain forward pass, `mc_predict` (backbone once, head sampled 25 times) and, in the first
`--naive-repeats` repeats, `mc_predict_naive` (25 full passes). Medians are reported per image,
with ratios fast/forward (expected <= 1.3) and naive/fast (expected about 20), each the median
of per-repeat ratios, so a load change on a shared machine hits both sides of a ratio.
The section "## Models and MC dropout" of BENCHMARKS.md is replaced (created if absent).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
import torch  # noqa: E402

from cxr.models import MODELS, create_model  # noqa: E402
from cxr.uncertainty import mc_predict, mc_predict_naive, predict_proba  # noqa: E402
from _report import write_section  # bench/_report.py (bench/ is on sys.path)

SECTION = "## Models and MC dropout"
MACHINE = "2-core CPU dev VM, no GPU"


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, batch: int, size: int, repeats: int, naive_repeats: int, passes: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(batch, 3, size, size)
    predict_proba(model, x)  # warm-up (allocator, oneDNN kernels)
    times = {"forward": [], "fast": [], "naive": []}
    fast_ratio, naive_ratio = [], []  # paired within a repeat: robust to load drifting over time
    for r in range(repeats):
        times["forward"].append(seconds(lambda: predict_proba(model, x)))
        times["fast"].append(seconds(lambda r=r: mc_predict(model, x, passes, seed=r)))
        fast_ratio.append(times["fast"][-1] / times["forward"][-1])
        if r < naive_repeats:
            times["naive"].append(seconds(
                lambda r=r: mc_predict_naive(model, x, passes, seed=r)))
            naive_ratio.append(times["naive"][-1] / times["fast"][-1])
    ms = {k: 1000 * statistics.median(v) / batch for k, v in times.items()}
    row = dict(model=name, params=sum(p.numel() for p in model.parameters()), **ms)
    row["fast/forward"] = statistics.median(fast_ratio)
    row["naive/fast"] = statistics.median(naive_ratio)
    print(f"{name:16s} forward {ms['forward']:8.1f} ms/img  fast MC {ms['fast']:8.1f}  "
          f"naive MC {ms['naive']:9.1f}  fast/forward {row['fast/forward']:.2f}  "
          f"naive/fast {row['naive/fast']:.1f}", flush=True)
    return row


def render(rows: list[dict], args, load: tuple) -> str:
    models = "" if args.models == list(MODELS) else " --models " + " ".join(args.models)
    lines = [
        SECTION, "",
        f"`python bench/bench_models.py{models} --batch {args.batch} --size {args.size} --repeats "
        f"{args.repeats} --naive-repeats {args.naive_repeats}"
        f"{f' --threads {args.threads}' if args.threads else ''}`, {time.strftime('%Y-%m-%d')}. "
        f"Machine: {MACHINE} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads); torch {torch.__version__}, "
        f"timm {timm.__version__}.",
        f"Random-init models in eval mode, batch {args.batch} at {args.size} px, times per image "
        f"(median of {args.repeats} repeats; naive MC median of {args.naive_repeats}), all "
        f"measured back to back in one run. MC = {args.passes} passes. Ratios are medians of "
        "ratios paired within a repeat (forward, fast MC, naive MC timed one after another).",
        f"Load average before / after: {load[0]:.1f} / {load[1]:.1f} (other sessions share the "
        "2 cores, so absolute times are noisy; the ratios are measured side by side).", "",
        "| model | params | forward ms/img | fast MC ms/img | naive MC ms/img | fast / forward "
        "| naive / fast |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['forward']:.1f} | {r['fast']:.1f} | "
                     f"{r['naive']:.1f} | {r['fast/forward']:.2f} | {r['naive/fast']:.1f} |")
    lines += ["", "At 224 px the head is well under 1% of a forward pass's work, so fast MC costs "
              f"about one forward pass (expected <= 1.3x) while naive MC costs {args.passes} "
              "(expected about 20x the fast path)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--passes", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice); 1 is steadier on a shared VM")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = [bench(m, args.batch, args.size, args.repeats, args.naive_repeats, args.passes)
            for m in args.models]
    text = render(rows, args, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        write_section(text, args.out)


if __name__ == "__main__":
    main()
