"""Issue 18 item 7 beyond the Triage page: run and model names, run errors and progress
messages (which hold file names) are shown as plain text on Train, Home and the sidebar."""
from __future__ import annotations

import json

from apptest_util import PLANTED, no_exception, unrendered


def test_a_runs_names_and_messages_are_plain_text_on_train_and_home(app, fresh_world):
    run = fresh_world.runs / "planted"
    run.mkdir()
    (run / "progress.json").write_text(json.dumps(
        {"status": "failed", "model": f"{PLANTED[1]} {PLANTED[0]}",
         "message": f"reading {PLANTED[0]}", "error": f"RuntimeError: {PLANTED[1]} {PLANTED[0]}"}))
    at = app(fresh_world, "pages/2_Train.py")
    at.selectbox(key="watch").set_value("planted")
    at.run()
    no_exception(at)
    assert unrendered(at) == []
    [error] = [e.value for e in at.error if e.value.startswith("Run failed: ")]
    assert error == ("Run failed: RuntimeError: \\*\\*bold\\*\\* "
                     "\\!\\[x\\]\\(http://127.0.0.1:9/x.png\\)")
    home = app(fresh_world)
    no_exception(home)
    assert unrendered(home) == []
