"""`cxr train`: train a model into a run directory; resumable; torchrun-ready.

    cxr train --data data/demo --model simple_cnn --out checkpoints/cnn --config configs/demo.yaml
    cxr train --data DIR --model fusion --out RUN_DIR --set image_size=224 --set epochs=25
    cxr train --resume RUN_DIR                       # after a crash, kill or stop request
    cxr train --data DIR --model fusion --out RUN_DIR --force      # start RUN_DIR over
    touch RUN_DIR/STOP                               # (or SIGTERM) stop cleanly, resumable
    torchrun --nproc_per_node=8 -m cxr.cli train --data DIR --model fusion --out RUN_DIR

Settings come from TrainConfig's defaults (the report's), then --config FILE.yaml, then
--data/--model, then each `--set key=value` (see cxr/train/config.py for every key). With
--resume the run's own config.yaml is used; only runtime keys may be changed
(RESUME_OVERRIDES). Multi-GPU / multi-node commands: cxr/train/distributed.py. Outputs:
ARCHITECTURE.md ("Run directory") and cxr/train/progress.py. Exit status: 0 finished or
stopped, 1 failed (progress.json says why).
"""
from __future__ import annotations

from pathlib import Path

from cxr.rundir import RunDir

# Keys that do not change what is trained, only where/how fast or how long.
RESUME_OVERRIDES = ("workers", "device", "amp", "max_minutes")


def add_arguments(parser) -> None:
    from cxr.models import MODELS  # the registry alone: no torch import

    parser.add_argument("--data",
                        help="dataset folder (ChestX-ray14 layout; `cxr synth` makes one)")
    parser.add_argument("--model", metavar="NAME", choices=list(MODELS), help="one of: " +
                        "; ".join(f"{name} ({info.description})" for name, info in MODELS.items()))
    parser.add_argument("--out", type=Path, help="run directory to create")
    parser.add_argument("--config", type=Path,
                        help="YAML file of config keys (e.g. configs/demo.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set image_size=128")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last.pt")
    parser.add_argument("--force", action="store_true",
                        help="start over in a run directory that already holds a run")


def build_config(args):
    from cxr.train.config import (TrainConfig, apply_overrides, load_config, parse_override,
                                  read_run_config)

    if args.resume:
        if args.data or args.model or args.config or args.force or (
                args.out and Path(args.out).resolve() != Path(args.resume).resolve()):
            raise ValueError("--resume RUN_DIR continues that run with its own config.yaml; "
                             "do not combine it with --data/--model/--config/--out/--force")
        for text in args.overrides:
            key = parse_override(text)[0]
            if key not in RESUME_OVERRIDES:
                raise ValueError(f"--set {key}=... cannot change a run being resumed (only "
                                 f"{', '.join(RESUME_OVERRIDES)} can)")
        config_path = RunDir(args.resume).config
        if not config_path.is_file():
            raise FileNotFoundError(f"cannot resume {args.resume}: it has no config.yaml")
        values = apply_overrides(read_run_config(config_path), args.overrides)
        return TrainConfig(**values), Path(args.resume)
    if args.out is None:
        raise ValueError("--out RUN_DIR is required (or --resume RUN_DIR)")
    data = str(Path(args.data).expanduser().resolve()) if args.data else None
    cfg = load_config(args.config, args.overrides, data_dir=data, model=args.model)
    if not cfg.data_dir:
        raise ValueError("no dataset: give --data DIR (or data_dir in the --config file)")
    return cfg, Path(args.out)


def run(args) -> int:
    from cxr.train.loop import train

    cfg, run_dir = build_config(args)
    return train(cfg, run_dir, resume=bool(args.resume), force=args.force)
