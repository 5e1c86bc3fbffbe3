"""What exists so far (data, runs, evaluations, worklist) and what to do next: the Home page.

`cxr demo` (the README's ./run.sh) trains in the background while the app is already up, so
every page asks this module what is there instead of assuming it; nothing here creates files.
"""
from __future__ import annotations

import gzip
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxr.dashboard.plain import code, md
from cxr.dashboard.runs import RunInfo, list_runs
from cxr.dashboard.state import Roots, find_datasets
from cxr.demo import DEMO_STATUS
from cxr.rundir import read_json
from cxr.worklist import SchemaMismatch, Worklist, WorklistUnavailable


@dataclass
class Overview:
    roots: Roots
    datasets: list[tuple[Path, int]]          # (folder, number of images listed)
    runs: list[RunInfo]
    demo: dict                                 # demo_status.json ({} when no demo ran)
    worklist: dict | None                      # {"cases", "pending", "decided"} or None
    steps: list[str] = field(default_factory=list)

    @property
    def running(self) -> list[RunInfo]:
        return [r for r in self.runs if r.active]

    @property
    def trained(self) -> list[RunInfo]:
        return [r for r in self.runs if r.has_best]

    @property
    def evaluated(self) -> list[RunInfo]:
        return [r for r in self.runs if r.evaluated]

    @property
    def demo_active(self) -> bool:
        stage = str(self.demo.get("stage", ""))
        return bool(self.demo) and not stage.startswith(("finished", "stopped"))


def count_images(dataset: Path) -> int:
    """Rows of the dataset's Data_Entry CSV (cheap: no directory walk over 112k files)."""
    for csv in sorted(Path(dataset).glob("Data_Entry_2017*.csv*")):
        try:
            with (gzip.open if csv.suffix == ".gz" else open)(csv, "rt") as f:
                return max(sum(1 for _ in f) - 1, 0)
        except OSError:
            continue
    return 0


def worklist_counts(path: Path | str) -> dict | None:
    """Case counts of an existing worklist, read-only (None when there is no database yet)."""
    try:
        return Worklist(path, create=False).counts()
    except FileNotFoundError:
        return None
    except (sqlite3.Error, OSError, WorklistUnavailable, SchemaMismatch):
        # unreadable, its server unreachable, another schema: the Triage page says which
        return {"cases": 0, "pending": 0, "decided": 0, "error": "unreadable"}


def overview(roots: Roots) -> Overview:
    datasets = [(d, count_images(d)) for d in find_datasets(roots.data)]
    view = Overview(roots, datasets, list_runs(roots.runs),
                    read_json(roots.runs / DEMO_STATUS), worklist_counts(roots.worklist))
    view.steps = next_steps(view)
    return view


def timeline(demo: dict, now: float | None = None) -> tuple[list[dict], str]:
    """The demo's timeline (demo_status.json's `timeline`) as table rows {stage, start,
    minutes, status} in order, and a one-line total: where the demo's time went. A step still
    running counts up to `now`."""
    now = time.time() if now is None else now
    rows, entries = [], [e for e in demo.get("timeline") or [] if isinstance(e, dict)]
    for e in entries:
        start, end = e.get("start"), e.get("end")
        if not isinstance(start, (int, float)):
            continue
        seconds = (end if isinstance(end, (int, float)) else now) - start
        rows.append({"stage": str(e.get("stage", "?")),
                     "start": time.strftime("%H:%M:%S", time.localtime(start)),
                     "minutes": round(max(seconds, 0.0) / 60, 2),
                     "status": "running" if end is None else ("ok" if e.get("ok") else "failed")})
    if not rows:
        return rows, ""
    first = min(e["start"] for e in entries if isinstance(e.get("start"), (int, float)))
    last = max((e.get("end") or now) for e in entries)
    slowest = max(rows, key=lambda r: r["minutes"])
    return rows, (f"{(last - first) / 60:.1f} minutes from the first step to "
                  f"{'now' if any(r['status'] == 'running' for r in rows) else 'the last'}; "
                  f"longest: {slowest['stage']} ({slowest['minutes']:.1f} min)")


def next_steps(v: Overview) -> list[str]:
    """Plain-language suggestions, most useful first."""
    steps = []
    if v.demo_active:
        steps.append(f"The demo pipeline is running ({md(v.demo.get('stage'))}); pages fill "
                     "in as models finish. Watch it on **Train**.")
    if not v.datasets:
        steps.append(f"No dataset under {code(v.roots.data)}. Run `./run.sh` (generates the "
                     "synthetic demo) or point `CXR_DATA_DIR` at a ChestX-ray14 copy.")
    if not v.runs and not v.demo_active:
        steps.append("No training run yet: launch one on **Train** (or run `./run.sh`).")
    elif v.running:
        names = ", ".join(md(r.name) for r in v.running)
        steps.append(f"Training in progress ({names}): follow it on **Train**.")
    if v.trained:
        steps.append("Upload a film on **Predict** to see probabilities, MC-dropout "
                     "uncertainty and Grad-CAM.")
    unevaluated = [r for r in v.trained if not r.evaluated and r.status not in ("running",)]
    if unevaluated and not v.demo_active:
        steps.append(f"{len(unevaluated)} trained run(s) not evaluated yet: evaluate them on "
                     "**Evaluate**.")
    if len(v.evaluated) >= 2:
        steps.append("Compare the evaluated models (Table 2, ROC, calibration) on **Evaluate**.")
    if v.worklist and v.worklist.get("pending"):
        steps.append(f"{v.worklist['pending']} case(s) wait for review on **Triage**.")
    elif v.worklist is None and not v.demo_active:
        steps.append("No worklist yet: `cxr worklist import PREDICTIONS.csv ...` fills it "
                     "(the demo does this after evaluation).")
    return steps
