"""A run directory, named in one place: what `cxr train --out RUN_DIR` writes, what `cxr evaluate`
adds under eval/, and the dashboard's job files (ARCHITECTURE.md, "Run directory").

    from cxr.rundir import RunDir
    run = RunDir("checkpoints/demo-fusion")
    run.best, run.last, run.progress, run.eval.metrics     # paths, whether they exist or not
    run.readout             # best.pt's sidecar from `cxr calibrate` (cxr/readout.py)
    run.status()            # progress.json's status ("running", "finished", ...), None before it
    run.read_progress()     # progress.json as a dict, {} while it is absent or half-written
    check_run_name("fusion-224")  # a run name the dashboard may create under its runs root

The readers never raise on a file that another process is writing: the dashboard polls them
while the trainer rewrites them. What the files hold: cxr/train/progress.py (progress.json,
history.csv, train.log), cxr/evaluation/scoring.py (eval/), cxr/dashboard/jobs.py (job-*).
"""
from __future__ import annotations

import json
import re
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


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_RUN_NAME = 100


class RunNameError(ValueError):
    """A run name that is not one plain folder name; the message says what is wrong."""


def check_run_name(name: str) -> str:
    """`name` when it is one plain folder name for a run under the runs root: letters, digits
    and . _ + -, starting with a letter or digit, at most 100 characters. No path (/, \\, an
    absolute path, ..): the run would land outside the runs root, where the dashboard can
    neither list nor stop it; no leading dot (a hidden folder, or . and ..)."""
    shown = repr(name if len(name) <= MAX_RUN_NAME else name[:MAX_RUN_NAME] + "…")
    if not name:
        raise RunNameError("the run name is empty")
    if "/" in name or "\\" in name:
        raise RunNameError(f"run name {shown} is a path: give one folder name (no / or \\); "
                           "the run goes in a new folder of that name under the runs folder")
    if name.startswith("."):
        raise RunNameError(f"run name {shown} starts with '.': a hidden folder, or . and .. "
                           "(the runs folder itself, or the one above it)")
    if len(name) > MAX_RUN_NAME:
        raise RunNameError(f"run name {shown} is longer than {MAX_RUN_NAME} characters")
    if not RUN_NAME.fullmatch(name):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9._+-]", c)})
        why = f"not {' '.join(map(repr, bad))}" if bad else f"not {name[0]!r} first"
        raise RunNameError(f"run name {shown}: use letters, digits and . _ + - only, starting "
                           f"with a letter or digit ({why})")
    return name


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
