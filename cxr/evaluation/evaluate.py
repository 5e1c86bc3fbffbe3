"""`cxr evaluate`: score a trained run on its own held-out split, or any model's predictions CSV.

Checkpoint mode (MC-dropout inference on the split the run was trained with; never `train`):

    cxr evaluate --checkpoint runs/fusion/best.pt                       # -> runs/fusion/eval/
    cxr evaluate --checkpoint runs/fusion/best.pt --data data/demo --split test --passes 25 \
        --bootstrap 1000 --seed 0 --out runs/fusion/eval

The validation split is predicted too, only to choose each finding's Youden threshold; the test
split is never used to tune anything. Writes predictions.csv, metrics.json, roc.csv and
calibration.csv (see cxr/evaluation/scoring.py). `--pointing-game` adds Grad-CAM localisation
hit rates when the dataset has a bbox list. With a readout (`cxr calibrate`), metrics.json gets
its `readout` section and calibration_calibrated.csv (cxr/evaluation/readout_report.py), and
predictions.csv the readout columns `cxr predict` writes (calls at `--operating-point`).
The uncertainty rule (flags, selective prediction) is the run's `uncertainty_rule` unless
`--uncertainty-rule mean|any` overrides it.

Sharded over GPUs or nodes with torchrun (cxr/train/distributed.py; gloo on CPU): each rank
scores whole batches, rank 0 gathers them and alone writes the same files a single process
writes (each film's MC-dropout noise comes from the seed and its name, cxr/uncertainty.py):

    torchrun --nproc_per_node=8 -m cxr.cli evaluate --checkpoint runs/fusion/best.pt

External mode (predictions from any model, `std_` columns optional):

    cxr evaluate --predictions their_preds.csv --labels Data_Entry_2017.csv \
        --images test_list.txt --out eval_external/

Every image of `--images` must be predicted; every predicted image must have labels (label-free
images can be predicted, never scored). `--val-predictions` (optional) chooses thresholds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr.evaluation.operating_points import POINTS
from cxr.evaluation.predictions import (Predictions, ReadoutColumns, predictions_frame,
                                        read_predictions)
from cxr.evaluation.readout_report import readout_section
from cxr.evaluation.scoring import labels_for, score, thresholds_from_validation, write_outputs
from cxr.hashing import file_sha256
from cxr.rundir import EvalDir, RunDir
from cxr.uncertainty import (DEFAULT_RULE, UNCERTAIN_STD, UNCERTAINTY_RULES, describe_rule,
                             image_uncertainty)


def add_arguments(parser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", help="RUN_DIR/best.pt of a trained run")
    mode.add_argument("--predictions", help="a predictions CSV from any model (external mode)")
    parser.add_argument("--data", help="dataset folder (default: the run's config data_dir)")
    parser.add_argument("--split", default="test", help="split to score: test (default) or val")
    parser.add_argument("--passes", type=int, default=None,
                        help="MC-dropout passes (default: the run's mc_passes, 25)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA, else MPS, else CPU), cpu, cuda, mps")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="patient-level bootstrap resamples for CIs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of MC dropout and bootstrap")
    parser.add_argument("--std-threshold", type=float, default=UNCERTAIN_STD,
                        help="MC std above which an image is flagged uncertain "
                             "(default %(default)s)")
    parser.add_argument("--uncertainty-rule", choices=UNCERTAINTY_RULES, default=None,
                        help="image score: mean (the report's: mean std over the findings) or any "
                             "(max std); default: the run's uncertainty_rule (external: the "
                             "file's, else mean)")
    parser.add_argument("--operating-point", choices=POINTS, default="youden",
                        help="checkpoint mode with a readout: the point of predictions.csv's "
                             "call_ columns (default %(default)s; metrics.json reports all three)")
    parser.add_argument("--pointing-game", action="store_true",
                        help="add Grad-CAM pointing-game hit rates (needs the bbox list)")
    parser.add_argument("--labels", help="external mode: Data_Entry_2017.csv[.gz] with the labels")
    parser.add_argument("--images", help="external mode: list of images to score (one per line)")
    parser.add_argument("--val-predictions",
                        help="external mode: validation predictions to choose thresholds on")
    parser.add_argument("--out", help="output folder (default RUN_DIR/eval; required externally)")


def run(args) -> int:
    out = evaluate_checkpoint(args) if args.checkpoint else evaluate_external(args)
    if out is not None:  # None: a torchrun rank other than 0, which writes nothing
        print(f"wrote {EvalDir(out).metrics}")
    return 0


def _summary(metrics: dict) -> str:
    ci = metrics.get("macro_auc_ci")
    text = f"macro AUC {metrics['macro_auc']:.4f}"
    return text + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")


# -- external mode ---------------------------------------------------------------------------

def _select(preds: Predictions, images: list[str], source: str) -> Predictions:
    """The predictions of exactly `images`, in that order; unpredicted images are an error."""
    pos = pd.Series(np.arange(len(preds.images)), index=preds.images)
    missing = [i for i in images if i not in pos.index]
    if missing:
        raise ValueError(f"{len(missing)} image(s) listed in {source} are not in the "
                         f"predictions (first: {', '.join(missing[:5])})")
    idx = pos.loc[images].to_numpy()
    return Predictions(np.asarray(images, dtype=object), preds.prob[idx],
                       None if preds.std is None else preds.std[idx])


def evaluate_external(args) -> Path:
    from cxr.data.layout import data_version
    from cxr.data.metadata import read_data_entry

    if not args.labels or not args.out:
        raise ValueError("--predictions needs --labels Data_Entry_2017.csv and --out DIR")
    if args.pointing_game:
        raise ValueError("--pointing-game needs --checkpoint (Grad-CAM needs the model)")
    preds = read_predictions(args.predictions)
    if args.images:
        names = [line.strip() for line in Path(args.images).read_text().splitlines()]
        preds = _select(preds, [n for n in names if n], args.images)
    table = read_data_entry(args.labels)
    y, patients = labels_for(preds.images, table, source=str(args.predictions))
    rule = args.uncertainty_rule or preds.rule or DEFAULT_RULE
    thresholds = None
    if args.val_predictions:
        val = read_predictions(args.val_predictions)
        overlap = set(val.images) & set(preds.images)
        if overlap:
            raise ValueError(f"{len(overlap)} image(s) are in both --val-predictions and the "
                             f"scored predictions (first: {', '.join(sorted(overlap)[:5])}): "
                             "thresholds must come from other images")
        thresholds = thresholds_from_validation(
            labels_for(val.images, table, source=str(args.val_predictions))[0], val.prob)
    metrics = score(y, preds.prob, patients, std=preds.std, thresholds=thresholds,
                    n_bootstrap=args.bootstrap, seed=args.seed, std_threshold=args.std_threshold,
                    uncertainty_rule=rule)
    metrics.update({"mode": "external", "split": Path(args.images).name if args.images else None,
                    "seed": args.seed, "strategy": None,
                    "data_version": data_version(args.labels),
                    "labels_file": str(Path(args.labels).resolve()),
                    "model": None, "predictions_file": str(Path(args.predictions).resolve()),
                    "predictions_sha256": file_sha256(args.predictions), "passes": None})
    image_score = flags = None
    if preds.std is not None:  # flags and scores under the rule in force
        image_score, flags = image_uncertainty(preds.std, rule, args.std_threshold)
    frame = predictions_frame(preds.images, preds.prob, preds.std, flags, image_score, rule)
    out = write_outputs(args.out, metrics, y, preds.prob, frame)
    print(f"{len(y)} images, {metrics['n_patients']} patients: {_summary(metrics)}")
    return out


# -- checkpoint mode --------------------------------------------------------------------------

def evaluate_checkpoint(args) -> Path | None:
    """Checkpoint mode, in one process or as one torchrun rank: the output folder, or None on
    ranks other than 0 (they score their batches and write nothing)."""
    from cxr.train import distributed

    if args.split not in ("test", "val"):
        raise ValueError(f"--split {args.split!r}: only 'test' or 'val' can be scored; the "
                         "training images are never evaluated")
    with distributed.inference_session(args.device) as info:
        return _evaluate_checkpoint(args, info)


def _evaluate_checkpoint(args, info) -> Path | None:
    from cxr.checkpoint import load_model
    from cxr.evaluation import inference
    from cxr.readout import load_readout
    from cxr.uncertainty import passes_for, rule_for

    ckpt = Path(args.checkpoint)
    args.device = str(info.device)
    model, meta = load_model(ckpt, args.device)
    sha = file_sha256(ckpt)  # hashed once: the readout check and metrics.json both need it
    readout = load_readout(ckpt, sha)  # before the inference: another checkpoint's is an error
    args.passes = passes_for(meta, args.passes)
    rule, origin = rule_for(meta, args.uncertainty_rule)
    print(f"uncertainty rule {describe_rule(rule, args.std_threshold)}, from {origin}"
          + (f"; {info.world_size} processes" if info.distributed else ""))
    data = inference.RunData.open(ckpt.parent, meta, args.data)
    scored = data.rows(args.split)
    val = data.rows("val") if args.split == "test" else None
    common = dict(passes=args.passes, batch_size=args.batch_size, seed=args.seed,
                  std_threshold=args.std_threshold, device=args.device, rule=rule, dist=info)
    mc = inference.mc_table(model, scored, keep=readout is not None, **common)
    mean, std, uncertain = mc.mean, mc.std, mc.uncertain
    v_mean = inference.mc_predict_table(model, val, **common)[0] if val is not None else None
    if not info.is_main:
        return None
    thresholds = thresholds_from_validation(data.targets(val), v_mean) if val is not None else None
    y = data.targets(scored)
    metrics = score(y, mean, scored["patient"].to_numpy(), std=std, thresholds=thresholds,
                    n_bootstrap=args.bootstrap, seed=args.seed, std_threshold=args.std_threshold,
                    uncertainty_rule=rule)
    metrics.update({"mode": "checkpoint", "split": args.split, "seed": args.seed,
                    **data.provenance(), "model": meta["model"],
                    "checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha,
                    "passes": args.passes})
    if args.pointing_game:
        metrics["pointing_game"] = inference.pointing_game_hook(model, scored, data)
    out = Path(args.out) if args.out else RunDir(ckpt.parent).eval.path
    applied = readout.apply(mean, mc.features, mc.samples) if readout is not None else None
    metrics["readout"] = readout_section(ckpt, readout, applied, scored, y, mean, out, args)
    image_score = image_uncertainty(std, rule)[0]
    columns = ReadoutColumns.of(applied, args.operating_point) if applied is not None else None
    frame = predictions_frame(scored["image"], mean, std, uncertain, image_score, rule, columns)
    write_outputs(out, metrics, y, mean, frame)
    print(f"{args.split}: {len(y)} images, {metrics['n_patients']} patients: {_summary(metrics)}"
          f"; {int(uncertain.sum())} uncertain under rule {rule}")
    return out
