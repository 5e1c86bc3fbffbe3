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


def test_timeline_rows_in_order_with_a_running_step_counted_to_now():
    demo = {"timeline": [
        {"stage": "data generation", "start": 1000.0, "end": 1030.0, "seconds": 30.0, "ok": True},
        {"stage": "train fusion", "start": 1030.0, "end": 1570.0, "seconds": 540.0, "ok": True},
        {"stage": "calibrate fusion", "start": 1570.0, "end": 1600.0, "seconds": 30, "ok": False},
        {"stage": "evaluate fusion", "start": 1600.0, "end": None, "seconds": None, "ok": True}]}
    rows, total = status.timeline(demo, now=1660.0)
    assert [r["stage"] for r in rows] == ["data generation", "train fusion", "calibrate fusion",
                                          "evaluate fusion"]
    assert [r["minutes"] for r in rows] == [0.5, 9.0, 0.5, 1.0]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "running"]
    assert total == "11.0 minutes from the first step to now; longest: train fusion (9.0 min)"
    assert status.timeline({}) == ([], "")
    assert status.timeline({"stage": "finished"}) == ([], "")  # a status from before timelines
