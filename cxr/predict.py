"""`cxr predict`: MC-dropout predictions (and Grad-CAM overlays) for films and folders.

    cxr predict --checkpoint checkpoints/demo-fusion/best.pt scans/ extra.dcm --out out/pred
    cxr predict --checkpoint best.pt scans/ --passes 50 --cam --top-k 3 --out out/pred
    cxr predict --checkpoint best.pt scans/ --operating-point sensitivity --out out/pred

    cxr predict --checkpoint best.pt export/ --exclude '*.txt' --exclude 'reports/*'

Inputs: files, or folders searched recursively. Every file is read by content (PNG, JPEG or
DICOM, whatever it is called), and every file given or found ends in exactly one place:
predicted, in errors.csv with its reason, or ignored because it is hidden (a name starting with
"." below a given folder) or matches an --exclude GLOB (on its name or its path below the given
folder). The summary line counts all three and they add up to the number of files:
    1000 files: 208 predicted, 780 not usable (errors.csv), 12 ignored (hidden/excluded)
Writes to --out (default `predictions/`):
  predictions.csv   the predictions CSV (cxr/evaluation/predictions.py: MC mean and std per
                    finding, uncertain = image score > --threshold under the rule; with the
                    checkpoint's readout, best.readout.pt, the calls at --operating-point and
                    the OOD flag), then source (the file's absolute path); Image Index
                    is the film's path below the folder given (IM0001.dcm in two study
                    folders: study1/IM0001.dcm, study2/IM0001.dcm), or its name
  readout.json      the readout used: operating point, per finding its threshold and validation
                    sensitivity and specificity, the OOD threshold; or, for a checkpoint without
                    a readout, {"available": false, "note": "no calibration / operating points /
                    OOD guard available for this checkpoint (run `cxr calibrate ...`)"}
  errors.csv        file, error: every input that could not be used (corrupt, truncated, not an
                    image, not a frontal chest radiograph, a folder link), also reported on
                    stderr; the rest go on
  cam/<stem>_<Finding>.png  with --cam: Grad-CAM overlays of the --top-k findings per film
  --samples DIR     DIR/<stem>.npz per film: its MC-dropout samples, the data of the report's
                    Figure 7 histogram (write_samples: `samples` (passes, 14) float32 raw
                    per-pass probabilities, `findings`, `name`, `mean`, `std`, `seed`; plain
                    arrays, np.load(path) reads them without pickle)
Nothing read from a DICOM header but its format, view, modality and body part reaches any of
these (cxr.data.dicom), so no patient identifier is written or printed.
The summary line ends with the films flagged out of distribution and the operating point, or
with that note. A readout fitted for another checkpoint (a retrained best.pt) is an error.
Exit status 0 when at least one image was predicted, 1 when none was. The rule is the run's
`uncertainty_rule` (the report's "mean" for checkpoints saved before it existed) unless
`--uncertainty-rule mean|any` overrides it; the summary line names it.

Sharded over GPUs or nodes with torchrun (cxr/train/distributed.py; gloo on CPU): the files
are cut into batches of --batch-size, rank r scores batches r, r + N, ..., and rank 0 receives
them in order and alone writes predictions.csv, errors.csv (with every rank's errors) and the
overlays: the same files a single process writes, because each film's dropout noise comes from
--seed and its name (cxr.uncertainty.film_seed) and its batch is the same films:

    torchrun --nproc_per_node=8 -m cxr.cli predict --checkpoint best.pt archive/ --out out/pred

The Python API the dashboard uses (one film -> probabilities, stds, MC samples):

    >>> from cxr.predict import predict_images
    >>> [p] = predict_images(model, [load_image(upload, name="film.dcm")], passes=25)
    >>> p.probs, p.std, p.samples.shape, p.uncertain        # (14,), (14,), (25, 14), bool
    >>> p.score, p.rule                                      # image uncertainty, "mean"
"""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from cxr.atomic import write_json
from cxr.data.images import ImageLoadError, LoadedImage, check_frontal, load_image
from cxr.data.transforms import build_transform
from cxr.device import DEVICES
from cxr.evaluation.operating_points import POINTS
from cxr.readout import annotate as annotate_readout
from cxr.uncertainty import (DEFAULT_RULE, UNCERTAIN_STD, UNCERTAINTY_RULES, describe_rule,
                             film_seeds_for, mc_predict, passes_for, rule_for)


@dataclass
class Prediction:
    name: str                      # Image Index: the file name
    probs: np.ndarray              # (14,) MC mean probability
    std: np.ndarray                # (14,) MC std: the uncertainty
    samples: np.ndarray            # (passes, 14) per-pass probabilities, for histograms
    uncertain: bool                # score > threshold: flagged under `rule`
    source: str | None = None      # absolute path, when it came from a file
    meta: dict = field(default_factory=dict)  # load_image's meta (format, view, ...)
    score: float = float("nan")    # the image's uncertainty under `rule` (cxr.uncertainty)
    rule: str = DEFAULT_RULE
    # Filled from the checkpoint's readout (cxr.readout.annotate); None without one.
    features: np.ndarray | None = None    # (C,) pooled features: the OOD score's input
    calibrated: np.ndarray | None = None  # (14,) calibrated MC-mean probability
    calls: list[str] | None = None        # (14,) positive / negative / uncertain / n/a
    operating_point: str | None = None    # youden / sensitivity / specificity
    ood_score: float | None = None        # Mahalanobis distance to the training features
    ood_flag: bool | None = None          # score above the readout's threshold
    readout_note: str | None = None       # why the four fields above are None


def load_frontal(source, name: str | None = None) -> LoadedImage:
    """load_image + the view check (cxr.data.images.check_frontal)."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<image>")
    return check_frontal(load_image(source, name=name), label)


def model_input(model: torch.nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """Film pixels (HxW in [0, 1]) -> the 3xSxS tensor the model was trained on."""
    return build_transform(model.preprocess, train=False)(pixels, None)


def predict_images(model: torch.nn.Module, items: Sequence, passes: int = 25,
                   threshold: float = UNCERTAIN_STD, seed: int | None = 0,
                   batch_size: int = 16, names: Sequence[str] | None = None,
                   rule: str = DEFAULT_RULE, readout=None,
                   operating_point: str = "youden") -> list[Prediction]:
    """Paths or LoadedImages -> one Prediction each, in order. A path that cannot be loaded
    raises ImageLoadError naming it (the CLI catches it per file). Each film's dropout masks
    come from (seed, its name) (cxr.uncertainty.film_seed), so a film gets the same samples
    alone or in any batch; seed None: fresh masks each call. Names: `names`, else the file's
    name, else image_<position>. readout: the checkpoint's `cxr.readout.load_readout(path)`;
    with it each Prediction gets calibrated probabilities, calls at `operating_point` and the
    OOD score and flag, without it those are None and `readout_note` says so."""
    device = next(model.parameters()).device
    items, out = list(items), []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        given = list(names[start:start + batch_size]) if names else [None] * len(chunk)
        images = [it if isinstance(it, LoadedImage) else load_frontal(it) for it in chunk]
        sources = [str(Path(it).resolve()) if isinstance(it, (str, os.PathLike)) else None
                   for it in chunk]
        chunk_names = [name or (Path(src).name if src else f"image_{start + i}")
                       for i, (name, src) in enumerate(zip(given, sources))]
        x = torch.stack([model_input(model, im.pixels) for im in images]).to(device)
        seeds = film_seeds_for(seed, chunk_names) if seed is not None else None
        r = mc_predict(model, x, passes=passes, threshold=threshold, rule=rule, film_seeds=seeds)
        for i, (im, src) in enumerate(zip(images, sources)):
            out.append(Prediction(chunk_names[i], r.mean[i], r.std[i], r.samples[:, i],
                                  bool(r.uncertain[i]), src, dict(im.meta), float(r.score[i]),
                                  rule, features=r.features[i]))
    return annotate_readout(out, readout, operating_point)


@dataclass
class Inputs:
    """Every file `cxr predict` was given or found, each in exactly one list."""
    files: list[Path] = field(default_factory=list)   # to read and predict, in order
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), never read
    ignored: list[Path] = field(default_factory=list)  # hidden or --exclude'd: counted only

    @property
    def total(self) -> int:
        return len(self.files) + len(self.errors) + len(self.ignored)


def find_inputs(inputs: Sequence[str | Path], exclude: Sequence[str] = ()) -> Inputs:
    """Files named on the command line, and every file below named folders (sorted, links to
    folders reported and not followed). A file named twice counts once. Named files are never
    hidden; --exclude applies to them too."""
    found, seen = Inputs(), set()

    def add(path: Path, hidden: bool, excluded: bool) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        if hidden or excluded:
            found.ignored.append(path)
        elif path.is_dir():  # a link to a folder met while walking
            found.errors.append((str(path), "a link to a folder, not followed (name the folder "
                                            "itself to include it)"))
        else:
            found.files.append(path)  # load_image reports what is not a readable file

    for p in map(Path, inputs):
        if p.is_dir():
            for path, rel in _walk(p, found):
                hidden = any(part.startswith(".") for part in rel.parts)
                add(path, hidden, _excluded(path.name, rel.as_posix(), exclude))
        elif p.exists() or p.is_symlink():  # a broken link is reported when it is read
            add(p, False, _excluded(p.name, str(p), exclude))
        else:
            found.errors.append((str(p), "no such file or folder"))
    return found


def _walk(root: Path, found: Inputs):
    """(path, path relative to root) of every entry below root that is not a folder: files,
    links, FIFOs... and links to folders, which os.walk does not enter."""
    def unreadable(exc: OSError) -> None:
        found.errors.append((str(exc.filename), f"cannot list folder ({exc.strerror or exc})"))

    for here, dirs, files in os.walk(root, onerror=unreadable):
        dirs.sort()
        here = Path(here)
        links = [d for d in dirs if (here / d).is_symlink()]
        for name in sorted(files) + links:
            yield here / name, (here / name).relative_to(root)


def _excluded(name: str, path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch(name, g) or fnmatch(path, g) for g in patterns)


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (recursive)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="ignore files whose name or path below the given folder matches "
                             "GLOB (repeatable; e.g. '*.txt', 'reports/*'); hidden files are "
                             "always ignored; both are counted in the summary")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained .pt")
    parser.add_argument("--out", type=Path, default=Path("predictions"),
                        help="output folder (default: predictions/)")
    parser.add_argument("--passes", type=int, default=None,
                        help="MC-dropout passes (default: the run's mc_passes, 25)")
    parser.add_argument("--threshold", type=float, default=UNCERTAIN_STD,
                        help="image score above which a film is uncertain (default %(default)s)")
    parser.add_argument("--uncertainty-rule", choices=UNCERTAINTY_RULES, default=None,
                        help="image score: mean (the report's: mean std over the findings) or any "
                             "(max std); default: the run's uncertainty_rule")
    parser.add_argument("--operating-point", choices=POINTS, default="youden",
                        help="where each finding's call is made (the checkpoint's readout, "
                             "chosen on validation): youden (Youden's J, the default), "
                             "sensitivity (validation sensitivity >= 0.90) or specificity "
                             "(validation specificity >= 0.90)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks")
    parser.add_argument("--cam", action="store_true", help="write Grad-CAM overlays to OUT/cam/")
    parser.add_argument("--top-k", type=int, default=3, help="findings explained per image")
    parser.add_argument("--cam-method", choices=("gradcam", "gradcam++"), default="gradcam")
    parser.add_argument("--opacity", type=float, default=0.4, help="heatmap opacity in overlays")
    parser.add_argument("--samples", type=Path, default=None, metavar="DIR",
                        help="write each film's MC-dropout samples to DIR/<stem>.npz")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto (CUDA, else MPS, else CPU; the default), cpu, cuda, mps")


def run(args) -> int:
    from cxr.train import distributed

    if (args.passes is not None and args.passes < 2) or args.batch_size < 1 or args.top_k < 1:
        raise ValueError("--passes must be >= 2, --batch-size and --top-k >= 1")
    with distributed.inference_session(args.device) as info:
        return _predict(args, info)


@dataclass
class _Batch:
    """One batch of files as scored by one rank, for rank 0 to write."""
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    preds: list[Prediction] = field(default_factory=list)        # without their samples
    cams: list[dict[str, bytes]] = field(default_factory=list)   # per pred: finding -> PNG


def _predict(args, info) -> int:
    from cxr.checkpoint import load_model
    from cxr.evaluation.predictions import predictions_frame, write_csv
    from cxr.readout import load_readout, not_available
    from cxr.train.distributed import gather_to_main

    model, meta = load_model(args.checkpoint, info.device)
    readout = load_readout(args.checkpoint)  # None: no sidecar; another checkpoint's: an error
    args.passes = passes_for(meta, args.passes)
    rule, origin = rule_for(meta, args.uncertainty_rule)
    print(f"uncertainty rule {rule}, from {origin}"
          + (f"; {info.world_size} processes" if info.distributed else ""))
    found = find_inputs(args.inputs, args.exclude)
    errors, preds, stems, sample_stems = [], [], set(), set()
    _report(errors, found.errors, info)
    files = found.files
    batches = [files[i:i + args.batch_size] for i in range(0, len(files), args.batch_size)]
    for first in range(0, len(batches), info.world_size):  # a round: one batch per rank
        mine = first + info.rank
        part = (_score_batch(model, batches[mine], args, rule, readout) if mine < len(batches)
                else _Batch())
        for batch in gather_to_main(info, part) or []:  # rank order is file order
            _report(errors, batch.errors, info)
            preds.extend(batch.preds)
            for pred, cams in zip(batch.preds, batch.cams):
                _save_cams(args.out, pred.name, cams, stems)
                if getattr(args, "samples", None) is not None:
                    write_samples(args.samples, pred, model.labels, args.seed, sample_stems)
    if not info.is_main:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(pd.DataFrame(errors, columns=["file", "error"]), args.out / "errors.csv")
    summary = (f"{found.total} files: {len(preds)} predicted, {len(errors)} not usable "
               f"(errors.csv), {len(found.ignored)} ignored (hidden/excluded)")
    if not preds:
        print(f"cxr predict: {summary}; no image could be predicted (see "
              f"{args.out / 'errors.csv'})", file=sys.stderr)
        return 1
    columns = readout_columns(preds) if readout is not None else None
    df = predictions_frame([p.name for p in preds], np.stack([p.probs for p in preds]),
                           np.stack([p.std for p in preds]), np.array([p.uncertain for p in preds]),
                           np.array([p.score for p in preds]), rule, columns)
    df["source"] = [p.source for p in preds]
    write_csv(df, args.out / "predictions.csv")
    if columns is None:  # readout.json: the readout the calls came from, or why there is none
        guard = not_available(args.checkpoint)
        write_json(args.out / "readout.json", {"available": False, "note": guard})
    else:
        write_json(args.out / "readout.json", readout.describe(args.operating_point))
        guard = (f"{int(columns.ood.sum())} out of distribution (OOD score > "
                 f"{readout.ood.threshold:.2f}), calls at the {args.operating_point} operating "
                 "point")
    print(f"{summary}; {int(df['uncertain'].sum())} uncertain under rule "
          f"{describe_rule(rule, args.threshold)}; {guard}; wrote {args.out / 'predictions.csv'}")
    return 0


def readout_columns(preds: list[Prediction]):
    """The predictions CSV's readout columns from annotated Predictions (cxr.readout.annotate)."""
    from cxr.evaluation.predictions import ReadoutColumns
    return ReadoutColumns(np.stack([p.calibrated for p in preds]),
                          np.array([p.calls for p in preds], dtype=object),
                          preds[0].operating_point, np.array([p.ood_score for p in preds]),
                          np.array([p.ood_flag for p in preds]))


def _report(errors: list, new: list[tuple[str, str]], info) -> None:
    """Record unusable files for errors.csv and say so on stderr (rank 0 only: it writes)."""
    if info.is_main:
        errors.extend(new)
        for path, reason in new:
            print(f"cxr predict: skipped {path}: {reason}", file=sys.stderr)


def _score_batch(model, paths: list[Path], args, rule: str, readout=None) -> _Batch:
    """Load, predict and (with --cam) render one batch of files; unusable files become errors."""
    out, loaded = _Batch(), []
    for path in paths:
        try:
            loaded.append((path, load_frontal(path)))
        except ImageLoadError as exc:
            out.errors.append((str(path), str(exc)))
    if not loaded:
        return out
    batch = predict_images(model, [im for _, im in loaded], passes=args.passes,
                           threshold=args.threshold, seed=args.seed, batch_size=args.batch_size,
                           names=[p.name for p, _ in loaded], rule=rule, readout=readout,
                           operating_point=args.operating_point)
    for (path, image), pred in zip(loaded, batch):
        pred.source = str(path.resolve())
        pred.name = film_key(path, args.inputs)  # after predicting: the seed is the file name's
        out.cams.append(_render_cams(model, image, pred, args) if args.cam else {})
        # light to send: the readout's fields are already computed from samples and features
        keep = getattr(args, "samples", None) is not None  # --samples writes them
        out.preds.append(replace(pred, samples=pred.samples if keep else pred.samples[:0],
                                 meta={}, features=None))
    return out


def film_key(path: Path, inputs: Sequence[str | Path]) -> str:
    """A film's `Image Index`: its path below the folder it was found in (`study1/IM0001.dcm`,
    so equal file names in two folders stay two films), or its file name if named directly."""
    for root in map(Path, inputs):
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def _render_cams(model, image: LoadedImage, pred: Prediction, args) -> dict[str, bytes]:
    """finding -> PNG bytes of its overlay, for the top-k findings, at the film's resolution."""
    from PIL import Image

    from cxr.explain import cam_maps, overlay

    labels = list(model.labels)
    top = [labels[i] for i in np.argsort(-pred.probs)[:args.top_k]]
    x = model_input(model, image.pixels).to(next(model.parameters()).device)
    maps = cam_maps(model, x, top, method=args.cam_method, size=image.pixels.shape)
    pngs = {}
    for finding, cam in maps.items():
        buffer = io.BytesIO()
        Image.fromarray(overlay(image.pixels, cam, args.opacity)).save(buffer, format="PNG")
        pngs[finding] = buffer.getvalue()
    return pngs


def write_samples(folder: Path, pred: Prediction, labels, seed, used: set[str]) -> Path:
    """One film's MC-dropout samples as folder/<stem>.npz (atomically), the stem made unique
    as the overlays' are: `samples` (passes, findings) float32, `findings`, `name`, `mean`,
    `std` and `seed` (-1: fresh masks), all plain arrays (np.load needs no pickle)."""
    from cxr.atomic import atomic_open

    path = Path(folder) / f"{_unique_stem(pred.name, used)}.npz"
    with atomic_open(path, "wb") as f:
        np.savez(f, samples=np.asarray(pred.samples, np.float32), findings=np.array(labels),
                 name=np.array(pred.name), mean=np.asarray(pred.probs, np.float32),
                 std=np.asarray(pred.std, np.float32), seed=np.array(-1 if seed is None else seed))
    return path


def _unique_stem(name: str, used: set[str]) -> str:
    """The file's stem, made unique (the same file name in two folders) in writing order."""
    stem, k = Path(name).stem, 1
    while stem in used:
        stem, k = f"{Path(name).stem}_{k}", k + 1
    used.add(stem)
    return stem


def _save_cams(out: Path, name: str, pngs: dict[str, bytes], used: set[str]) -> None:
    """Write a film's overlays as cam/<stem>_<Finding>.png, the stem made unique (the same
    file name in two folders) in the order films are written."""
    if not pngs:
        return
    stem = _unique_stem(name, used)
    (out / "cam").mkdir(parents=True, exist_ok=True)
    for finding, data in pngs.items():
        (out / "cam" / f"{stem}_{finding}.png").write_bytes(data)
