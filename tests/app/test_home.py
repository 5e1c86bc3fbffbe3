"""app.py: the home page and router render with nothing, with a demo underway, with everything."""
from __future__ import annotations

import json

from apptest_util import no_exception


def test_home_shows_status_of_everything(app, world):
    at = app(world)
    no_exception(at)
    assert any("not for diagnosis" in e.value for e in at.error)  # the disclaimer, in the page
    assert any("not for diagnosis" in w.value for w in at.sidebar.warning)  # and the sidebar
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Datasets": "0", "Trained runs": "1", "Evaluated runs": "1",
                       "Worklist cases": "6"}
    steps = " ".join(m.value for m in at.markdown)
    assert "6 case(s) wait for review" in steps and "**Predict**" in steps


def test_home_on_a_fresh_clone_says_what_to_do(app, empty_world):
    at = app(empty_world)
    no_exception(at)
    steps = " ".join(m.value for m in at.markdown)
    assert "No dataset under" in steps and "No training run yet" in steps
    assert not empty_world.worklist.exists()  # looking did not create the database


def test_home_shows_the_demo_pipeline_while_it_runs(app, empty_world):
    empty_world.runs.mkdir(parents=True)
    (empty_world.runs / "demo_status.json").write_text(json.dumps(
        {"stage": "training fusion (checkpoints/demo-fusion)", "done": [], "failed": [],
         "timeline": [{"stage": "data generation", "start": 1000.0, "end": 1060.0,
                       "seconds": 60.0, "ok": True},
                      {"stage": "train fusion", "start": 1060.0, "end": None, "seconds": None,
                       "ok": True}]}))
    at = app(empty_world)
    no_exception(at)
    assert any("training fusion" in i.value for i in at.info)
    assert at.expander[0].label.startswith("Demo timeline: ")  # where the demo's time goes
    table = at.dataframe[0].value
    assert list(table["stage"]) == ["data generation", "train fusion"]
    assert list(table["status"]) == ["ok", "running"] and table["minutes"][0] == 1.0
    assert "No training run yet" not in " ".join(m.value for m in at.markdown)
