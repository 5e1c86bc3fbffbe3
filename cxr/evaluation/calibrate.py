"""`cxr calibrate`: fit a checkpoint's readout (calibration, operating points, OOD guard) on its
own run's validation and training films, and write it beside the checkpoint (cxr/readout.py).

    cxr calibrate --checkpoint runs/fusion/best.pt               # -> runs/fusion/best.readout.pt
    cxr calibrate --checkpoint runs/fusion/best.pt --data /data/cxr14 --passes 25 \
        --ood-share 0.95 --method temperature --max-train-films 20000 --seed 0

1. The run's split and dataset, as `cxr evaluate` opens them (RunData: RUN_DIR/split.csv checked
   against the checkpoint's hash, the dataset's data_version against the run's).
2. MC-dropout predictions on the VALIDATION split (`mc_predict_table`, the function and seed
   `cxr evaluate` uses): calibration and operating points are fitted on them.
3. Pooled features (one deterministic backbone pass) of the TRAINING split, at most
   --max-train-films of them (a subsample seeded by --seed), for the OOD covariance, and of the
   validation split, for its conformal threshold (with the training films' leave-one-out
   scores where they look like the validation films'; --ood-validation-only: never).
The test split is never read. The readout records the ids of every image it was fitted on.

`--from-worklist DB` refits the calibration and operating points of an existing readout on the
checkpoint's reviewed cases in that worklist instead (cxr/evaluation/recalibrate.py).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cxr.device import DEVICES


def add_arguments(parser) -> None:
    from cxr.evaluation.calibration import METHODS
    from cxr.evaluation.ood import DEFAULT_SHARE, MAX_TRAIN_FILMS
    from cxr.evaluation.recalibrate import HOLDOUT_SHARE, MIN_POSITIVES

    parser.add_argument("--checkpoint", type=Path, required=True, help="RUN_DIR/best.pt")
    parser.add_argument("--data", help="dataset folder (default: the run's config data_dir)")
    parser.add_argument("--passes", type=int, default=None,
                        help="MC-dropout passes on validation (default: the run's mc_passes, 25)")
    parser.add_argument("--method", choices=METHODS, default="temperature",
                        help="calibration map per finding (default %(default)s)")
    parser.add_argument("--ood-share", type=float, default=DEFAULT_SHARE,
                        help="share of validation films inside the OOD threshold "
                             "(default %(default)s)")
    parser.add_argument("--ood-validation-only", action="store_true",
                        help="set the OOD threshold on validation films only (default: also "
                             "the training films' leave-one-out scores, when a KS test cannot "
                             "tell them from the validation films')")
    parser.add_argument("--max-train-films", type=int, default=MAX_TRAIN_FILMS,
                        help="training films the OOD covariance is fitted on, a seeded "
                             "subsample above it (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of MC dropout and of the training subsample")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto (CUDA, else MPS, else CPU; the default), cpu, cuda, mps")
    parser.add_argument("--from-worklist", metavar="DB",
                        help="refit the readout on this worklist's reviewed cases of the "
                             "checkpoint (not on its split)")
    parser.add_argument("--holdout-share", type=float, default=HOLDOUT_SHARE,
                        help="--from-worklist: the later share of the reviewed cases held out "
                             "to report calibration error before/after (default %(default)s)")
    parser.add_argument("--min-positives", type=int, default=MIN_POSITIVES,
                        help="--from-worklist: positives (and negatives) a finding needs to be "
                             "refitted; others keep the validation fit (default %(default)s)")


def run(args) -> int:
    if args.from_worklist:
        from cxr.evaluation.recalibrate import run as from_worklist
        return from_worklist(args)
    from cxr.checkpoint import library_versions, git_commit, load_model
    from cxr.device import pick_device
    from cxr.evaluation.calibration import nll, clipped_logit
    from cxr.evaluation.inference import RunData, mc_table
    from cxr.evaluation.metrics import ece
    from cxr.evaluation.ood import pooled_features, subsample
    from cxr.hashing import file_sha256
    from cxr.readout import fit_readout, save_readout
    from cxr.uncertainty import passes_for

    if (args.passes is not None and args.passes < 2) or args.max_train_films < 2:
        raise ValueError("--passes and --max-train-films must be >= 2")
    if not 0 < args.ood_share < 1:  # before minutes of inference, not after
        raise ValueError(f"--ood-share {args.ood_share}: must be between 0 and 1 (e.g. 0.95)")
    ckpt = Path(args.checkpoint)
    device = pick_device(args.device)
    model, meta = load_model(ckpt, device)
    sha = file_sha256(ckpt)
    passes = passes_for(meta, args.passes)
    data = RunData.open(ckpt.parent, meta, args.data)
    val, train = data.rows("val"), data.rows("train")
    train = train.iloc[subsample(len(train), args.max_train_films, args.seed)]
    print(f"calibrate: {len(val)} validation images ({passes} MC passes), features of "
          f"{len(train)} training and the validation images", flush=True)
    y_val = data.targets(val)
    # one backbone pass over validation: the MC means and the pooled features (as predict
    # scores a film: the OOD threshold is set on the same features it is later applied to)
    val_mc = mc_table(model, val, passes=passes, batch_size=args.batch_size, seed=args.seed,
                      device=str(device), keep=True)
    p_val = val_mc.mean
    feats = {"val": val_mc.features,
             "train": pooled_features(model, train, args.batch_size, device)}
    provenance = {
        "fitted_on": {"calibration": "val", "operating_points": "val", "ood_covariance": "train",
                      "ood_threshold": "val" if args.ood_validation_only
                      else "val + train leave-one-out when alike"},
        "seed": args.seed, "passes": passes, **data.provenance(),
        "n_val_images": int(len(val)), "n_train_films": int(len(train)),
        "val_prevalence": {f: float(v) for f, v in zip(model.labels, y_val.mean(axis=0))},
        "n_train_available": int((data.joined["split"] == "train").sum()),
        "max_train_films": args.max_train_films,
        "val_images": val["image"].tolist(), "train_images": train["image"].tolist(),
        "checkpoint": str(ckpt.resolve()), "model": meta["model"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions(),
        "git_commit": git_commit()}
    readout = fit_readout(y_val, p_val, feats["val"], feats["train"], sha, model.labels,
                          args.method, args.ood_share, provenance,
                          pool_train=not args.ood_validation_only)
    p_cal = readout.calibrate(p_val)
    readout.provenance["val_fit"] = {  # in-sample: the numbers the maps were fitted to lower
        "nll_before": _macro(lambda k: nll(y_val[:, k], clipped_logit(p_val[:, k])), y_val),
        "nll_after": _macro(lambda k: nll(y_val[:, k], clipped_logit(p_cal[:, k])), y_val),
        "ece_before": _macro(lambda k: ece(y_val[:, k], p_val[:, k]), y_val),
        "ece_after": _macro(lambda k: ece(y_val[:, k], p_cal[:, k]), y_val)}
    path = save_readout(readout, ckpt)
    fit = readout.provenance["val_fit"]
    print(f"validation (fitted on, in-sample): macro ECE {fit['ece_before']:.4f} -> "
          f"{fit['ece_after']:.4f}, NLL {fit['nll_before']:.4f} -> {fit['nll_after']:.4f}; "
          f"OOD threshold {readout.ood.threshold:.2f} (covariance of {len(train)} training "
          f"films): {ood_sentence(readout.ood)}")
    print(f"wrote {path}")
    return 0


def ood_sentence(ood) -> str:
    """The OOD threshold's promise in one sentence (cxr.readout.ood_promise)."""
    from cxr.readout import ood_promise
    got = ood_promise(ood)
    if got["flag_rate_interval"] is None:
        return f"no finite-sample promise ({got['note']})"
    lo, hi = got["flag_rate_interval"]
    return (f"flags {got['expected_flag_rate']:.1%} of in-distribution films in expectation "
            f"(95% interval {lo:.1%} to {hi:.1%}; conformal on {got['n_calibration']} films: "
            f"{got['note']})")


def _macro(per_finding, y: np.ndarray) -> float:
    return float(np.mean([per_finding(k) for k in range(y.shape[1])]))
