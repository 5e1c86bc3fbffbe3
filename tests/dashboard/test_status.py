"""cxr/dashboard/status.py: what exists, what to do next; nothing is created."""
from __future__ import annotations

import json
import sqlite3

from cxr.dashboard import status
from cxr.dashboard.state import Roots


def test_empty_world_suggests_first_steps_and_creates_nothing(tmp_path):
    roots = Roots(tmp_path / "runs", tmp_path / "data", tmp_path / "data" / "w.sqlite")
    view = status.overview(roots)
    assert view.datasets == [] and view.runs == [] and view.worklist is None
    text = " ".join(view.steps)
    assert "No dataset" in text and "No training run yet" in text and "No worklist" in text
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_demo_in_progress_and_worklist_counts(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "demo_status.json").write_text(json.dumps({"stage": "training fusion", "done": []}))
    db = tmp_path / "w.sqlite"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE cases (id INTEGER PRIMARY KEY);"
                      "CREATE TABLE decisions (id INTEGER PRIMARY KEY, case_id INTEGER);"
                      "INSERT INTO cases VALUES (1), (2), (3);"
                      "INSERT INTO decisions (case_id) VALUES (1), (1);")
    con.commit()
    con.close()
    view = status.overview(Roots(runs, tmp_path / "data", db))
    assert view.demo_active and view.worklist == {"cases": 3, "pending": 2, "decided": 1}
    assert view.steps[0].startswith("The demo pipeline is running (training fusion)")
    assert "2 case(s) wait for review" in " ".join(view.steps)
    (runs / "demo_status.json").write_text(json.dumps({"stage": "finished", "done": ["fusion"]}))
    assert not status.overview(Roots(runs, tmp_path / "data", db)).demo_active
