"""Where the dashboard looks: the runs root, the data root and the worklist database.

Defaults are relative to the directory the app is started from (the repo root for the README's
command); each can be moved with an environment variable, which is how tests point the app at
temporary folders:

    CXR_RUNS_DIR=/tmp/runs CXR_DATA_DIR=/tmp/data CXR_WORKLIST=/tmp/w.sqlite streamlit run app.py

CXR_WORKLIST may also be a database URL (postgresql+psycopg://user@host/db, a team's worklist);
it is kept as given, and shown with its password masked (cxr.worklist.mask).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WORKLIST_NAME = "worklist.sqlite"


@dataclass(frozen=True)
class Roots:
    runs: Path      # one sub-directory per training run (checkpoints/ by default)
    data: Path      # datasets (data/ by default; the demo writes data/demo)
    worklist: Path | str  # the review worklist: an SQLite file, or a database URL (kept as is)

    @classmethod
    def from_env(cls, env: dict | None = None, cwd: Path | None = None) -> "Roots":
        env = os.environ if env is None else env
        cwd = Path.cwd() if cwd is None else Path(cwd)
        runs = Path(env.get("CXR_RUNS_DIR") or cwd / "checkpoints")
        data = Path(env.get("CXR_DATA_DIR") or cwd / "data")
        named = env.get("CXR_WORKLIST") or ""
        worklist = named if "://" in named else Path(named or data / WORKLIST_NAME).resolve()
        return cls(runs.resolve(), data.resolve(), worklist)


def find_datasets(data_root: Path, max_depth: int = 2) -> list[Path]:
    """Folders below `data_root` (and itself) laid out like the NIH release (a Data_Entry CSV)."""
    found, level = [], [Path(data_root)] if Path(data_root).is_dir() else []
    for depth in range(max_depth + 1):
        below = []
        for folder in level:
            if any(folder.glob("Data_Entry_2017*.csv*")):
                found.append(folder)  # its own sub-folders (images, splits, cache) are not datasets
            elif depth < max_depth:
                below += sorted(p for p in folder.iterdir()
                                if p.is_dir() and not p.name.startswith("."))
        level = below
    return sorted(found)
