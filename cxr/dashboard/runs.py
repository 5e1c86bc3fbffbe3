"""Training runs as the dashboard sees them: found by walking the runs root, read from their files.

A run directory is whatever `cxr train --out DIR` wrote (cxr/rundir.py names its files). Everything
here only reads files, so a page can poll it every couple of seconds while `cxr train` writes them
from another process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxr.dashboard import jobs
from cxr.jsonsafe import finite_or_none
from cxr.rundir import EVAL, RunDir

SKIP_DIRS = {EVAL, "cache", "splits", "__pycache__"}
HEARTBEAT_S = 120  # a running trainer rewrites progress.json far more often than this
ACTIVE = ("starting", "running")


@dataclass
class RunInfo:
    path: Path
    name: str                      # path relative to the runs root
    model: str = ""                # registry name, e.g. "fusion"
    status: str = "unknown"        # starting/running/finished/failed/stopped/died/unknown
    phase: str = ""
    epoch: int | None = None
    epochs: int | None = None
    fraction: float = 0.0          # 0..1 of all steps
    eta_s: float | None = None
    error: str = ""
    best_val_auc: float | None = None
    has_best: bool = False
    evaluated: bool = False
    updated: float = 0.0           # mtime of the newest status file
    progress: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return RunDir(self.path).best

    @property
    def active(self) -> bool:
        """Training now, or about to: it can be stopped."""
        return self.status in ACTIVE

    @property
    def resumable(self) -> bool:
        """Ended before finishing, with a last.pt to continue from."""
        return self.status in ("stopped", "died", "failed") and RunDir(self.path).last.is_file()


def best_val_auc(history: pd.DataFrame, progress: dict) -> float | None:
    if "val_macro_auc" in history.columns and history["val_macro_auc"].notna().any():
        return finite_or_none(history["val_macro_auc"].max())
    return finite_or_none(progress.get("best_val_auc"))


def run_info(run_dir: Path, root: Path | None = None) -> RunInfo:
    """Everything the pages show about one run, read from its files now."""
    run_dir, run = Path(run_dir), RunDir(run_dir)
    progress, config, history = run.read_progress(), run.read_config(), run.read_history()
    name = str(run_dir.relative_to(root)) if root and run_dir.is_relative_to(root) else run_dir.name
    model = progress.get("model") or config.get("model") or ""  # the registry name, both
    fraction, step, total = (finite_or_none(progress.get(key))
                             for key in ("fraction", "global_step", "total_steps"))
    if fraction is None and step is not None and total:
        fraction = step / total
    stamps = [p.stat().st_mtime for p in (run.progress, run.history) if p.exists()]
    info = RunInfo(path=run_dir, name=name, model=str(model), progress=progress,
                   phase=str(progress.get("phase") or ""), epoch=progress.get("epoch"),
                   epochs=progress.get("epochs") or config.get("epochs"),
                   fraction=min(max(fraction or 0.0, 0.0), 1.0),
                   eta_s=finite_or_none(progress.get("eta_s")),
                   error=str(progress.get("error") or ""),
                   best_val_auc=best_val_auc(history, progress), has_best=run.best.is_file(),
                   evaluated=run.eval.metrics.is_file(), updated=max(stamps, default=0.0))
    info.status = _status(run_dir, progress, info)
    if info.status in ("failed", "died") and not info.error:
        code = jobs.exit_code(run_dir, "train")
        tail = jobs.log_tail(run_dir, "train", lines=8)
        info.error = (f"exit status {code}: " if code is not None else "") + (
            tail or "the process ended without writing an error (killed?)")
    return info


def _status(run_dir: Path, progress: dict, info: RunInfo) -> str:
    """The trainer's own status (running / finished / failed / stopped), 'starting' before it
    wrote one, or 'died' when it says running but its process is gone (killed, OOM, reboot)."""
    status = str(progress.get("status") or "").lower()
    job = jobs.job_state(run_dir, "train")
    if status in ("", "running") and job == "running":
        return status or "starting"
    if status == "running":
        if job == "exited":
            return "died"
        # Launched elsewhere (`cxr demo`, a terminal, a cluster): progress.json names its pid,
        # and its heartbeat (`updated`, at least every few seconds) covers other hosts.
        pid = progress.get("pid")
        if isinstance(pid, int) and jobs.pid_alive(pid, needle=b"cxr"):
            return status
        return status if time.time() - info.updated < HEARTBEAT_S else "died"
    if status:
        return status
    if job == "exited":
        return "failed"  # the job ended before the trainer wrote anything: see its log
    return "finished" if info.has_best else "unknown"


def find_runs(root: Path, max_depth: int = 3) -> list[Path]:
    """Run directories below `root`, newest first (by their status files' mtime)."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:  # the folders below `folder`, at depth + 1
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if child.name in SKIP_DIRS or child.name.startswith("."):
                continue
            if RunDir(child).taken():  # a run that just started may only have its job's pid file
                found.append(child)
            elif depth + 1 < max_depth:
                walk(child, depth + 1)

    walk(Path(root), 0)
    return found


def list_runs(root: Path) -> list[RunInfo]:
    runs = [run_info(path, root) for path in find_runs(root)]
    return sorted(runs, key=lambda r: (-r.updated, r.name))


def run_to_watch(runs: list[RunInfo]) -> RunInfo | None:
    """What the Train page monitors first: a run in progress, else the newest."""
    return next((r for r in runs if r.active), runs[0] if runs else None)


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """The past-runs table: one row per run."""
    return pd.DataFrame([{
        "run": r.name, "model": r.model, "status": r.status,
        "epoch": r.epoch, "phase": r.phase,
        "progress": r.fraction, "best val AUC": r.best_val_auc,
        "evaluated": r.evaluated, "error": r.error[:200],
        "updated": pd.Timestamp(r.updated, unit="s", tz="UTC") if r.updated else pd.NaT,
    } for r in runs], columns=["run", "model", "status", "epoch", "phase", "progress",
                               "best val AUC", "evaluated", "error", "updated"])


def best_run(runs: list[RunInfo], model: str | None = "fusion") -> RunInfo | None:
    """The run with a best.pt and the highest val AUC, preferring `model`; None if no checkpoint."""
    usable = [r for r in runs if r.has_best]
    preferred = [r for r in usable if model and r.model == model] or usable
    return max(preferred, default=None,
               key=lambda r: (r.best_val_auc if r.best_val_auc is not None else -1, r.updated))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
