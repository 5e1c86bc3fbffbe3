"""A run directory, named in one place: what `cxr train --out RUN_DIR` writes, what `cxr evaluate`
adds under eval/, and the dashboard's job files (ARCHITECTURE.md, "Run directory").

    from cxr.rundir import RunDir
    run = RunDir("checkpoints/demo-fusion")
    run.best, run.last, run.progress, run.eval.metrics     # paths, whether they exist or not
    run.readout             # best.pt's sidecar from `cxr calibrate` (cxr/readout.py)
    run.status()            # progress.json's status ("running", "finished", ...), None before it
    run.read_progress()     # progress.json as a dict, {} while it is absent or half-written

The readers never raise on a file that another process is writing: the dashboard polls them
while the trainer rewrites them. What the files hold: cxr/train/progress.py (progress.json,
history.csv, train.log), cxr/evaluation/scoring.py (eval/), cxr/dashboard/jobs.py (job-*).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

CONFIG, SPLIT, SPLIT_META = "config.yaml", "split.csv", "split.json"  # split.json: the sidecar
HISTORY, PROGRESS, LOG = "history.csv", "progress.json", "train.log"
BEST, LAST = "best.pt", "last.pt"
# Everything a training run writes: a folder holding any of them already has a run.
RUN_FILES = (CONFIG, SPLIT, SPLIT_META, HISTORY, PROGRESS, BEST, LAST, LOG)
STOP = "STOP"  # a stop request: the trainer polls for it once per step, stops and deletes it
READOUT = "best.readout.pt"  # `cxr calibrate`'s sidecar of best.pt (cxr.readout.readout_path)
EVAL = "eval"  # `cxr evaluate`'s default output folder


def read_json(path: str | Path) -> dict:
    """A JSON object written by another process, or {} while it is absent or half-written."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class EvalDir:
    """A `cxr evaluate` output folder (RUN_DIR/eval, or any --out)."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    predictions = property(lambda self: self.path / "predictions.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    roc = property(lambda self: self.path / "roc.csv")
    calibration = property(lambda self: self.path / "calibration.csv")
    # the reliability table after the readout's calibration (cxr/evaluation/readout_report.py)
    calibrated = property(lambda self: self.path / "calibration_calibrated.csv")


@dataclass(frozen=True)
class RunDir:
    """A training run's folder; `RunDir(path).best` is its best.pt, and so on."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / CONFIG)
    split = property(lambda self: self.path / SPLIT)
    history = property(lambda self: self.path / HISTORY)
    progress = property(lambda self: self.path / PROGRESS)
    log = property(lambda self: self.path / LOG)
    best = property(lambda self: self.path / BEST)
    last = property(lambda self: self.path / LAST)
    stop = property(lambda self: self.path / STOP)
    readout = property(lambda self: self.path / READOUT)
    eval = property(lambda self: EvalDir(self.path / EVAL))

    def job(self, kind: str, ext: str) -> Path:
        """A dashboard job's file: job-<kind>.pid, .log or .exit (cxr/dashboard/jobs.py)."""
        return self.path / f"job-{kind}.{ext}"

    def used(self) -> list[str]:
        """The run files present: a new run into this folder would mix with them."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def taken(self) -> list[str]:
        """used(), plus a train job's pid file: the dashboard claims a run before it trains."""
        return self.used() + [p.name for p in [self.job("train", "pid")] if p.exists()]

    def clear(self) -> None:
        """Delete the run's files, its readout and evaluation (`cxr train --force`); job files
        stay."""
        for name in (*RUN_FILES, STOP, READOUT):
            (self.path / name).unlink(missing_ok=True)
        if self.eval.path.is_dir():
            shutil.rmtree(self.eval.path)

    def read_progress(self) -> dict:
        return read_json(self.progress)

    def status(self) -> str | None:
        """The trainer's status (running, finished, failed, stopped); None before it wrote one."""
        return self.read_progress().get("status")

    def read_config(self) -> dict:
        """config.yaml as a dict, {} when absent or unparsable (cxr.train.config validates it)."""
        import yaml
        try:
            value = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return value if isinstance(value, dict) else {}

    def read_history(self):
        """history.csv as a DataFrame (empty when absent); a garbled line is skipped and a row
        cut short reads as empty cells, so a half-written last row never raises."""
        import pandas as pd
        try:
            return pd.read_csv(self.history, on_bad_lines="skip")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return pd.DataFrame()
