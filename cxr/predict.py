"""`cxr predict`: MC-dropout predictions (and Grad-CAM overlays) for films and folders.

    cxr predict --checkpoint checkpoints/demo-fusion/best.pt scans/ extra.dcm --out out/pred
    cxr predict --checkpoint best.pt scans/ --passes 50 --cam --top-k 3 --out out/pred

Inputs: PNG, JPEG or DICOM files, or folders searched recursively (images by extension, DICOM
also by its `DICM` magic whatever the file is called). Writes to --out (default `predictions/`):
  predictions.csv   Image Index, prob_<Finding> x14 (MC mean), std_<Finding> x14, uncertain
                    (any std > --threshold), source (the file's absolute path)
  errors.csv        file, error: every input that could not be used (corrupt, truncated,
                    not an image, a lateral view), also reported on stderr; the rest go on
  cam/<stem>_<Finding>.png  with --cam: Grad-CAM overlays of the --top-k findings per film
Exit status 0 when at least one image was predicted, 1 when none was.

The Python API the dashboard uses (one film -> probabilities, stds, MC samples):

    >>> from cxr.predict import predict_images
    >>> [p] = predict_images(model, [load_image(upload, name="film.dcm")], passes=25)
    >>> p.probs, p.std, p.samples.shape, p.uncertain        # (14,), (14,), (25, 14), bool
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from cxr.data.images import ImageLoadError, LoadedImage, check_frontal, load_image
from cxr.data.transforms import build_transform
from cxr.device import DEVICES, pick_device
from cxr.uncertainty import UNCERTAIN_STD, mc_predict, passes_for

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


@dataclass
class Prediction:
    name: str                      # Image Index: the file name
    probs: np.ndarray              # (14,) MC mean probability
    std: np.ndarray                # (14,) MC std: the uncertainty
    samples: np.ndarray            # (passes, 14) per-pass probabilities, for histograms
    uncertain: bool                # any std > threshold
    source: str | None = None      # absolute path, when it came from a file
    meta: dict = field(default_factory=dict)  # load_image's meta (format, view, ...)


def load_frontal(source, name: str | None = None) -> LoadedImage:
    """load_image + the view check (cxr.data.images.check_frontal)."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<image>")
    return check_frontal(load_image(source, name=name), label)


def model_input(model: torch.nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """Film pixels (HxW in [0, 1]) -> the 3xSxS tensor the model was trained on."""
    return build_transform(model.preprocess, train=False)(pixels, None)


def predict_images(model: torch.nn.Module, items: Sequence, passes: int = 25,
                   threshold: float = UNCERTAIN_STD, seed: int | None = 0,
                   batch_size: int = 16, names: Sequence[str] | None = None) -> list[Prediction]:
    """Paths or LoadedImages -> one Prediction each, in order. A path that cannot be loaded
    raises ImageLoadError naming it (the CLI catches it per file). seed fixes the dropout masks
    (None: fresh ones each call)."""
    device = next(model.parameters()).device
    items, out = list(items), []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        chunk_names = list(names[start:start + batch_size]) if names else [None] * len(chunk)
        images, sources = [], []
        for item, name in zip(chunk, chunk_names):
            is_path = isinstance(item, (str, os.PathLike))
            images.append(item if isinstance(item, LoadedImage) else load_frontal(item))
            sources.append(str(Path(item).resolve()) if is_path else None)
        x = torch.stack([model_input(model, im.pixels) for im in images]).to(device)
        r = mc_predict(model, x, passes=passes, seed=seed, threshold=threshold)
        for i, (im, src) in enumerate(zip(images, sources)):
            name = chunk_names[i] or (Path(src).name if src else f"image_{start + i}")
            out.append(Prediction(name, r.mean[i], r.std[i], r.samples[:, i], bool(r.uncertain[i]),
                                  src, dict(im.meta)))
    return out


def find_images(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named on the command line, and images below named folders (sorted); a path that
    does not exist becomes an error row."""
    files, errors = [], []
    for p in map(Path, inputs):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and _looks_like_image(f)))
        else:
            errors.append((str(p), "no such file or folder"))
    return files, errors


def _looks_like_image(path: Path) -> bool:
    if any(part.startswith(".") for part in path.parts[-1:]):
        return False  # .DS_Store and editors' temp files
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    with open(path, "rb") as f:  # extension-less DICOM (PACS exports name files by UID)
        return f.read(132)[128:132] == b"DICM"


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (recursive)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained .pt")
    parser.add_argument("--out", type=Path, default=Path("predictions"),
                        help="output folder (default: predictions/)")
    parser.add_argument("--passes", type=int, default=None,
                        help="MC-dropout passes (default: the run's mc_passes, 25)")
    parser.add_argument("--threshold", type=float, default=UNCERTAIN_STD,
                        help="std above which a finding is uncertain (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks")
    parser.add_argument("--cam", action="store_true", help="write Grad-CAM overlays to OUT/cam/")
    parser.add_argument("--top-k", type=int, default=3, help="findings explained per image")
    parser.add_argument("--cam-method", choices=("gradcam", "gradcam++"), default="gradcam")
    parser.add_argument("--opacity", type=float, default=0.4, help="heatmap opacity in overlays")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto (CUDA, else MPS, else CPU; the default), cpu, cuda, mps")


def run(args) -> int:
    from cxr.checkpoint import load_model
    from cxr.evaluation.predictions import predictions_frame, write_csv

    if (args.passes is not None and args.passes < 2) or args.batch_size < 1 or args.top_k < 1:
        raise ValueError("--passes must be >= 2, --batch-size and --top-k >= 1")
    model, meta = load_model(args.checkpoint, pick_device(args.device))
    args.passes = passes_for(meta, args.passes)
    files, errors = find_images(args.inputs)
    preds: list[Prediction] = []
    cam_names: set[str] = set()
    for start in range(0, len(files), args.batch_size):
        loaded = []
        for path in files[start:start + args.batch_size]:
            try:
                loaded.append((path, load_frontal(path)))
            except ImageLoadError as exc:
                errors.append((str(path), str(exc)))
                print(f"cxr predict: skipped {path}: {exc}", file=sys.stderr)
        if not loaded:
            continue
        batch = predict_images(model, [im for _, im in loaded], passes=args.passes,
                               threshold=args.threshold, seed=args.seed,
                               batch_size=args.batch_size, names=[p.name for p, _ in loaded])
        for (path, image), pred in zip(loaded, batch):
            pred.source = str(path.resolve())
            if args.cam:
                _write_cams(model, image, pred, args, cam_names)
        preds.extend(batch)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(pd.DataFrame(errors, columns=["file", "error"]), args.out / "errors.csv")
    if not preds:
        print(f"cxr predict: no image could be predicted ({len(errors)} failed; see "
              f"{args.out / 'errors.csv'})", file=sys.stderr)
        return 1
    df = predictions_frame([p.name for p in preds], np.stack([p.probs for p in preds]),
                           np.stack([p.std for p in preds]), np.array([p.uncertain for p in preds]))
    df["source"] = [p.source for p in preds]
    write_csv(df, args.out / "predictions.csv")
    print(f"wrote {args.out / 'predictions.csv'}: {len(preds)} images, "
          f"{int(df['uncertain'].sum())} uncertain, {len(errors)} skipped")
    return 0


def _write_cams(model, image: LoadedImage, pred: Prediction, args, used: set[str]) -> None:
    """Overlays of the top-k findings, at the film's resolution; stems made unique."""
    from PIL import Image

    from cxr.explain import cam_maps, overlay

    stem, k = Path(pred.name).stem, 1
    while stem in used:  # same file name in two folders
        stem, k = f"{Path(pred.name).stem}_{k}", k + 1
    used.add(stem)
    labels = list(model.labels)
    top = [labels[i] for i in np.argsort(-pred.probs)[:args.top_k]]
    x = model_input(model, image.pixels).to(next(model.parameters()).device)
    maps = cam_maps(model, x, top, method=args.cam_method, size=image.pixels.shape)
    (args.out / "cam").mkdir(parents=True, exist_ok=True)
    for finding, cam in maps.items():
        Image.fromarray(overlay(image.pixels, cam, args.opacity)).save(
            args.out / "cam" / f"{stem}_{finding}.png")
