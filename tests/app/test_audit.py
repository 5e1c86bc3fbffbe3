"""pages/5_Audit.py: the site audit of a queue once cases are decided, its limits said."""
from __future__ import annotations

import sys
from pathlib import Path

from apptest_util import no_exception

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: review_cases
from review_cases import case, worklist  # noqa: E402

PAGE = "pages/5_Audit.py"


def test_no_decision_yet(app, world):
    at = app(world, PAGE)
    no_exception(at)
    assert any("No case of this queue is decided yet" in i.value for i in at.info)
    assert any("not ground truth" in w.value and "Research use only" in w.value
               for w in at.warning)


def test_audit_of_decided_cases(app, fresh_world):
    fresh_world.worklist.unlink()  # a queue imported with a readout (calls), 8 cases
    rows = [case(f"c{i}", calls={"Effusion": "positive" if i < 4 else "negative"},
                 score=0.01 * (i + 1)) for i in range(8)]
    wl = worklist(fresh_world.worklist.parent, rows, name=fresh_world.worklist.name)
    for i in range(1, 8):  # case 8 stays pending; the most uncertain are disagreed with
        wl.record_decision(i, "disagree" if i >= 6 else "agree", "dr a",
                           corrected=[] if i >= 6 else None)
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert any("Does uncertainty predict disagreement? AUROC of the uncertainty score 1.00"
               in m.value for m in at.markdown)
    assert any("n = 7 cases" in c.value and "checkpoint aaaaaaaaaaaa" in c.value
               for c in at.caption)
    frames = {d.value.columns[0]: d.value for d in at.dataframe}
    assert frames["reviewer"]["decisions"].tolist() == [7]
    assert frames["finding"].set_index("finding").loc["Effusion", "TP"] == 4


def test_a_new_decision_shows_on_the_next_run(app, fresh_world):
    fresh_world.worklist.unlink()
    rows = [case(f"c{i}", calls={"Effusion": "positive"}) for i in range(3)]
    wl = worklist(fresh_world.worklist.parent, rows, name=fresh_world.worklist.name)
    wl.record_decision(1, "agree", "dr a")
    at = app(fresh_world, PAGE)
    assert any("n = 1 cases" in c.value for c in at.caption)
    wl.record_decision(2, "disagree", "dr b", corrected=[], simulated=True)
    at.run()
    no_exception(at)
    assert any("n = 2 cases" in c.value for c in at.caption)
    assert any("1 of 2 decisions were made by the demo's SIMULATED reviewer" in e.value
               for e in at.error)


def test_an_unreachable_database_server_is_a_clear_message(app, fresh_world, monkeypatch):
    url = "postgresql+psycopg://cxr:pw-never-shown@127.0.0.1:9/cxr"  # nothing listens on 9
    monkeypatch.setattr(fresh_world, "worklist", url)
    at = app(fresh_world, PAGE, timeout=120)
    no_exception(at)
    [error] = at.error
    text = error.value.replace("\\", "")
    assert text.startswith("The worklist is not available right now: the worklist database "
                           "postgresql+psycopg://cxr:***@127.0.0.1:9/cxr cannot be reached")
    assert all("pw-never-shown" not in e.value for e in [*at.error, *at.info, *at.caption])


def test_no_worklist_yet(app, fresh_world):
    fresh_world.worklist.unlink()
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert any("No worklist at" in i.value and "the audit needs reviewed cases" in i.value
               for i in at.info)
