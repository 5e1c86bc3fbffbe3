"""How well the readout's out-of-distribution score (cxr/evaluation/ood.py) tells a checkpoint's
own test films from films of other kinds: AUROC of the score, and the share flagged at the
readout's threshold, printed as a markdown table (for MODEL_CARD.md).

    cxr calibrate --checkpoint checkpoints/demo-fusion/best.pt      # the readout, if absent
    .venv/bin/python bench/bench_ood.py --checkpoint checkpoints/demo-fusion/best.pt
    .venv/bin/python bench/bench_ood.py --checkpoint RUN/best.pt --data DIR \
        --nih ../shared/data/nih --films 200 --seed 0 --device cpu

The sets ("in": the run's own test split; every other set is "out", made or read here, nothing
downloaded):
  test films      up to --films of the run's test split, a seeded sample: the in-distribution set
  real NIH films  every PNG below --nih (default ../shared/data/nih, 56 real ChestX-ray14 films):
                  for a demo model trained on phantoms these are out of distribution
  photo-like      procedural natural-image statistics: 1/f amplitude spectrum noise (the power
                  law of natural photographs) with a few flat-shaded ellipses and rectangles
  lateral-like    each test film squeezed to 55% of its width, pushed to one side and padded
                  black (a narrow side-on silhouette), and each test film rotated by 90 degrees
  corrupted       each test film with Gaussian noise (sd 0.3), inverted (1 - x), or with
                  16 random black blocks covering about a third of it
A score of 1.0 separates the set perfectly, 0.5 is chance. The threshold flags about
the share of in-distribution films the readout promises (its conformal threshold's expected rate
and 95% interval, the `expected` line).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_NIH = Path(os.environ.get("CXR_NIH_DIR", REPO.parent / "shared" / "data" / "nih"))


def photo_like(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    f = np.fft.fftfreq(size)
    radius = np.maximum(np.hypot(*np.meshgrid(f, f)), 1.0 / size)
    spectrum = radius ** -rng.uniform(0.9, 1.3) * np.exp(2j * np.pi * rng.random((size, size)))
    img = np.real(np.fft.ifft2(spectrum))
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(int(rng.integers(2, 6))):  # objects: flat-shaded ellipses and boxes
        cx, cy, rx, ry = rng.uniform(0.1, 0.9, 2).tolist() + rng.uniform(0.05, 0.3, 2).tolist()
        inside = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1) if rng.random() < 0.5 \
            else ((abs(xx - cx) < rx) & (abs(yy - cy) < ry))
        img[inside] = rng.random()
    return img.astype(np.float32)


def squeezed(px: np.ndarray) -> np.ndarray:
    from PIL import Image
    h, w = px.shape
    narrow = np.asarray(Image.fromarray(px).resize((int(w * 0.55), h), Image.BILINEAR))
    out = np.zeros_like(px)
    out[:, w - narrow.shape[1]:] = narrow
    return out


def blocks(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out, (h, w) = px.copy(), px.shape
    for _ in range(16):
        y, x = int(rng.integers(0, h - h // 6)), int(rng.integers(0, w - w // 6))
        out[y:y + h // 6, x:x + w // 6] = 0.0
    return out


def machine() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def features(model, pixels: list[np.ndarray], batch_size: int, device) -> np.ndarray:
    import torch
    from cxr.predict import model_input
    parts = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            x = torch.stack([model_input(model, p) for p in pixels[i:i + batch_size]]).to(device)
            parts.append(model.pool_features(model.forward_features(x)).float().cpu().numpy())
    return np.concatenate(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", help="dataset folder (default: the run's config data_dir)")
    parser.add_argument("--nih", type=Path, default=DEFAULT_NIH, help="folder of real NIH PNGs")
    parser.add_argument("--films", type=int, default=200, help="test films (and per made set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from cxr.checkpoint import load_model
    from cxr.data.images import load_image
    from cxr.device import pick_device
    from cxr.evaluation.inference import RunData
    from cxr.readout import load_readout, not_available

    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device)
    readout = load_readout(args.checkpoint)
    if readout is None:
        raise SystemExit(f"bench_ood: {not_available(args.checkpoint)}")
    data = RunData.open(args.checkpoint.parent, meta, args.data)
    rng = np.random.default_rng(args.seed)
    test = data.rows("test")
    test = test.iloc[np.sort(rng.permutation(len(test))[:args.films])]
    films = [load_image(p).pixels for p in test["path"]]
    nih = sorted(args.nih.rglob("*.png")) if args.nih.is_dir() else []
    sets = {
        "real NIH films": ("real ChestX-ray14 PNGs", [load_image(p).pixels for p in nih]),
        "photo-like": ("1/f noise + flat shapes", [photo_like(rng) for _ in films]),
        "lateral-like: squeezed": ("film at 55% width, to one side",
                                   [squeezed(p) for p in films]),
        "lateral-like: rotated 90°": ("film turned on its side",
                                      [np.rot90(p).copy() for p in films]),
        "corrupted: noise": ("Gaussian noise sd 0.3",
                             [np.clip(p + rng.normal(0, 0.3, p.shape), 0, 1).astype(np.float32)
                              for p in films]),
        "corrupted: inverted": ("1 - x", [1 - p for p in films]),
        "corrupted: blocks": ("16 black blocks", [blocks(p, rng) for p in films]),
    }
    inside = readout.ood_scores(features(model, films, args.batch_size, device))
    rows = [f"| test films (in) | the run's own test split | {len(films)} | - | "
            f"{(inside > readout.ood.threshold).mean():.2f} |"]
    for name, (what, pixels) in sets.items():
        if not pixels:
            rows.append(f"| {name} | {what} | 0 | (none found under {args.nih}) | - |")
            continue
        outside = readout.ood_scores(features(model, pixels, args.batch_size, device))
        y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
        auroc = roc_auc_score(y, np.r_[inside, outside])
        rows.append(f"| {name} | {what} | {len(pixels)} | {auroc:.3f} | "
                    f"{(outside > readout.ood.threshold).mean():.2f} |")
    prov = readout.provenance
    print(f"OOD score of {args.checkpoint} ({meta['model']['name']}; Mahalanobis, LedoitWolf on "
          f"{prov.get('n_train_films')} training films; threshold {readout.ood.threshold:.2f}, "
          f"{readout.ood.method} at {readout.ood.share:.0%}). Split {prov.get('strategy')} "
          f"seed {prov.get('split_seed')}, data {prov.get('data_version')}, bench seed "
          f"{args.seed}, machine: {machine()}, "
          f"{os.cpu_count()} CPUs, device {device}.\n")
    print("| set | what it is | films | AUROC vs test films | flagged at threshold |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))
    from cxr.evaluation.calibrate import ood_sentence
    print(f"\nexpected: the threshold {ood_sentence(readout.ood)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
