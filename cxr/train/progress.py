"""What a run tells the outside world while it trains: progress.json, history.csv, train.log.

Only rank 0 writes, at the paths `cxr.rundir.RunDir` names. The dashboard polls these files from
another process (RunDir.read_progress, read_history), so each is safe to read at any moment.
README.md ("Outputs and their formats") lists their keys and columns.

- `progress.json` is rewritten atomically, at most every `interval` seconds during an epoch and
  always on phase/epoch/status changes. `epoch` counts over the whole run (1-based); `epochs`,
  `total_steps` and `eta_s` are upper bounds (early stopping may end sooner).
- `history.csv`: one flushed row per epoch (HISTORY_COLUMNS): train_loss is the mean over the
  epoch's images, seconds is train + validation, images_per_s counts every process, and
  val_macro_auc is the mean over the val_classes findings with both positives and negatives in
  val. An empty cell is "no value" (a finding without both, never counted as 0 or 0.5, or an
  epoch not validated when val_every > 1); pandas reads it as NaN.
- `train.log`: the log lines (also on stderr).
"""
from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from pathlib import Path

from cxr.atomic import write_json, write_text
from cxr.labels import FINDINGS
from cxr.rundir import RunDir

HISTORY_COLUMNS = ["phase", "epoch", "phase_epoch", "train_loss", "val_loss", "val_macro_auc",
                   "val_classes", "val_images", *[f"val_auc_{f}" for f in FINDINGS], "lr",
                   "seconds", "images_per_s"]


class Progress:
    """progress.json writer; a no-op object on ranks other than 0."""

    def __init__(self, folder: Path, enabled: bool = True, interval: float = 2.0, **static):
        self.path = RunDir(folder).progress
        self.enabled = enabled
        self.interval = interval
        self.state: dict = {"status": "running", "pid": os.getpid(), **static}
        self._last = 0.0

    def update(self, force: bool = False, **fields) -> None:
        self.state.update(fields)
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.state["updated"] = now
        write_json(self.path, self.state)


class History:
    """history.csv: header once, then one flushed row per epoch."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = RunDir(run_dir).history
        self.enabled = enabled

    def append(self, row: dict) -> None:
        if not self.enabled:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, epoch: int) -> None:
        """Drop rows past `epoch` (a run killed between writing a row and saving last.pt
        repeats that epoch on resume; the row must not appear twice)."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r.get("epoch") and int(r["epoch"]) <= epoch]
        if len(keep) == len(rows):
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
        write_text(self.path, text.getvalue())


def setup_logger(run_dir: Path, enabled: bool) -> logging.Logger:
    """Logger 'cxr.train' writing to stderr and RUN_DIR/train.log (rank 0 only)."""
    logger = logging.getLogger("cxr.train")
    close_logger(logger)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if enabled:
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in (logging.StreamHandler(sys.stderr),
                        logging.FileHandler(RunDir(run_dir).log)):
            handler.setFormatter(fmt)
            logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    """tqdm on rank 0 when stderr is a terminal; otherwise a bar that does nothing."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, initial=initial, leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))
