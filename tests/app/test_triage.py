"""pages/4_Triage.py: the worklist table (most uncertain first), filters, a selected case's film,
CAM and probabilities, and decisions recorded through cxr.worklist."""
from __future__ import annotations

import errno
import math
import sqlite3

import numpy as np
import pytest
from apptest_util import PLANTED, button, no_exception, page_text, unrendered

from cxr.dashboard import plain
from cxr.worklist import Worklist

PAGE = "pages/4_Triage.py"


def cases_table(at):
    frames = [d.value for d in at.dataframe if "uncertainty" in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def uncertain_order(at) -> None:
    """Choose the 'most uncertain first' order, under which the Sort by box applies."""
    at.selectbox(key="f_order").set_value("uncertain")
    at.run()


def select_row(at, row: int) -> None:
    """Click row `row` of the case table as it is drawn now, and rerun."""
    # the table's key (one per list of cases; "cases" before issue 18)
    key = at.session_state["triage_table"][0] if "triage_table" in at.session_state else "cases"
    at.session_state[key] = {"selection": {"rows": [row], "columns": []}}
    at.run()


def shown_case(at) -> int:
    """The id of the case the page shows (its heading: 'Case 12: image')."""
    [heading] = [h.value for h in at.subheader if h.value.startswith("Case ")]
    return int(heading.split(":")[0].removeprefix("Case "))


def form_widget(at, kind: str, label: str):
    """The decision form's widget with this label (its key holds the case id)."""
    [widget] = [w for w in getattr(at, kind) if w.label == label]
    return widget


def fill_form(at, decision: str, corrected=(), note: str = "", reviewer: str | None = None):
    form_widget(at, "radio", "Decision").set_value(decision)
    form_widget(at, "multiselect", "Findings present (if you disagree)").set_value(
        list(corrected))
    form_widget(at, "text_area", "Note").set_value(note)
    if reviewer is not None:
        at.text_input(key="d_reviewer").set_value(reviewer)


def history_table(at):
    """The case's history as the page shows it (st.table; cells escaped for Markdown)."""
    [table] = at.table
    return table.value


def test_no_worklist_yet(app, empty_world):
    at = app(empty_world, PAGE)
    no_exception(at)
    assert any("No worklist" in i.value for i in at.info)
    assert not empty_world.worklist.exists()


def test_table_is_sorted_by_uncertainty_and_first_case_is_shown(app, world):
    at = app(world, PAGE)
    uncertain_order(at)
    no_exception(at)
    table = cases_table(at)
    assert len(table) == 6
    assert table["uncertainty"].is_monotonic_decreasing
    # the default sort is the rule's image score, and the page says which rule the scores follow
    assert at.selectbox(key="f_sort").value == "uncertainty (image score, by rule)"
    rules = set(Worklist(world.worklist).cases()["uncertainty_rule"].dropna())
    assert set(table["rule"]) - {""} == rules and rules
    assert any("Uncertainty is each case's image score under its rule: " in c.value
               for c in at.caption)
    first = int(table["id"].iloc[0])
    assert at.subheader[0].value.startswith(f"Case {first}:")
    # the case's film with its Grad-CAM (the checkpoint that predicted it is a known run)
    assert any(c.startswith("Grad-CAM: ") for img in at.image for c in img.captions)
    assert len(at.get("plotly_chart")) == 1  # its probabilities


def test_sorting_and_filters(app, world):
    at = app(world, PAGE)
    uncertain_order(at)
    at.selectbox(key="f_sort").set_value("image")
    at.toggle(key="f_asc").set_value(True)
    at.run()
    no_exception(at)
    assert cases_table(at)["image"].is_monotonic_increasing
    u = sorted(Worklist(world.worklist).cases()["uncertainty"])
    cut = math.ceil(u[2] * 100) / 100  # keeps the 3 least uncertain (at least), not all 6
    assert cut < u[-1]
    at.slider(key="f_unc").set_value((0.0, cut))
    at.run()
    expected = Worklist(world.worklist).cases(max_uncertainty=cut)
    assert 3 <= len(expected) < 6
    assert sorted(cases_table(at)["id"]) == sorted(expected["id"])
    at.selectbox(key="f_finding").set_value("Effusion")
    at.slider(key="f_unc").set_value((0.0, 0.5))
    at.run()
    expected = Worklist(world.worklist).cases(finding="Effusion", min_prob=0.5)
    assert 0 < len(expected) < 6  # the fixture's seed gives 3
    assert (cases_table(at)["Effusion"] >= 0.5).all()
    assert sorted(cases_table(at)["id"]) == sorted(expected["id"])
    at.selectbox(key="f_status").set_value("agree")  # nobody agreed yet
    at.run()
    no_exception(at)
    assert any("No case matches" in i.value for i in at.info)


def test_selecting_a_row_shows_that_case(app, world):
    at = app(world, PAGE)
    table = cases_table(at)
    select_row(at, 2)
    no_exception(at)
    assert at.subheader[0].value.startswith(f"Case {int(table['id'].iloc[2])}:")


def test_recording_a_decision(app, fresh_world):
    at = app(fresh_world, PAGE)
    case_id = int(cases_table(at)["id"].iloc[0])
    fill_form(at, "disagree", ["Effusion", "Cardiomegaly"], "blunted costophrenic angle",
              reviewer="dr test")
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    history = Worklist(fresh_world.worklist).history(case_id)
    assert len(history) == 1
    row = history.iloc[0]
    assert (row["decision"], row["reviewer"], row["note"]) == \
        ("disagree", "dr test", "blunted costophrenic angle")
    assert row["corrected"] == '["Cardiomegaly", "Effusion"]'  # NIH order
    assert any(f"case {case_id}" in s.value for s in at.success)
    assert history_table(at)["decision"].tolist() == ["disagree"]  # the case's history
    # the status filter finds it; a fresh session (an app restart) still sees it
    at.selectbox(key="f_status").set_value("disagree")
    at.run()
    assert cases_table(at)["id"].tolist() == [case_id]
    again = app(fresh_world, PAGE)
    table = cases_table(again)
    assert table.loc[table["id"] == case_id, "status"].item() == "disagree"


def test_a_decision_without_reviewer_is_refused_and_nothing_written(app, fresh_world):
    at = app(fresh_world, PAGE)
    case_id = int(cases_table(at)["id"].iloc[0])
    fill_form(at, "agree")
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert any("reviewer" in e.value for e in at.error)
    assert Worklist(fresh_world.worklist).history(case_id).empty


def test_export_buttons(app, world):
    at = app(world, PAGE)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Export cases with status (CSV)", "Export every decision (CSV)"]


def _second_queue(world):
    """A simple_cnn run (val AUC 0.90, above the fusion run's) whose readings of the same six
    films came with a readout: film i has i positive calls, films 4 and 5 out of distribution."""
    import numpy as np
    import dashboard_env
    from cxr.evaluation.predictions import ReadoutColumns, predictions_frame
    from cxr.hashing import file_sha256
    run = dashboard_env.write_run(world.runs / "tiny-cnn", "simple_cnn", val_auc=0.90)
    calls = np.array([["positive" if j < i else "negative" for j in range(14)]
                      for i in range(6)], dtype=object)
    rng = np.random.default_rng(5)
    std = np.full((6, 14), 0.05)
    frame = predictions_frame(
        [f.name for f in world.films], rng.random((6, 14)), std, None, std.mean(axis=1), "mean",
        ReadoutColumns(rng.random((6, 14)), calls, "sensitivity", np.arange(6) * 5.0,
                       np.arange(6) >= 4))
    frame["source"] = [str(f) for f in world.films]
    frame.to_csv(world.root / "cnn.csv", index=False)
    Worklist(world.worklist).import_predictions(world.root / "cnn.csv", "simple_cnn",
                                                file_sha256(run / "best.pt"))
    return file_sha256(run / "best.pt")


def test_one_model_per_queue_calls_and_ood(app, fresh_world):
    cnn = _second_queue(fresh_world)
    at = app(fresh_world, PAGE)
    uncertain_order(at)  # the order under which the Sort by box applies
    no_exception(at)
    # the fusion run's queue by default (fusion first, though the cnn's val AUC is higher):
    # its six films, each once, though the worklist holds each film twice
    assert at.selectbox(key="f_queue").value != cnn
    table = cases_table(at)
    assert len(table) == 6 and table["image"].is_unique and set(table["model"]) == {"fusion"}
    assert any("came without a readout" in c.value for c in at.caption)
    at.selectbox(key="f_queue").set_value(cnn)
    at.run()
    no_exception(at)
    table = cases_table(at)
    assert len(table) == 6 and set(table["model"]) == {"simple_cnn"}
    assert any("Calls at the sensitivity operating point" in c.value for c in at.caption)
    marked = table.loc[table["OOD"] != "", "image"]
    assert sorted(marked) == sorted(f.name for f in fresh_world.films[4:])
    at.selectbox(key="f_call").set_value("positive")  # any positive call: films 1-5
    at.selectbox(key="f_ood").set_value("in distribution")  # films 0-3
    at.selectbox(key="f_sort").set_value("positive calls")
    at.run()
    no_exception(at)
    assert cases_table(at)["image"].tolist() == [f.name for f in fresh_world.films[3:0:-1]]
    at.selectbox(key="f_ood").set_value("out of distribution")
    at.selectbox(key="f_call").set_value("any")
    at.run()
    no_exception(at)
    assert cases_table(at)["image"].tolist() == [f.name for f in fresh_world.films[5:3:-1]]
    # the case shown before left the list: the page says so, and shows it until one is chosen
    assert any("is no longer in this list" in w.value for w in at.warning)
    select_row(at, 0)
    no_exception(at)
    [error] = at.error  # the shown case is out of distribution, and the page says so first
    assert "unlike the films this model was trained on (OOD score 25.00)" in error.value
    assert any("Calls at the sensitivity operating point: positive Atelectasis" in c.value
               for c in at.caption)


# -- issue 18 item 1: a decision lands on the case that was shown, or is refused -----------------
def pending_page(app, world, row: int = 0, reviewer: str | None = None):
    """A reviewer's session on the pending queue, looking at the case on row `row` (with a
    reviewer's name: typed first, so opening a case claims it)."""
    at = app(world, PAGE)
    at.selectbox(key="f_status").set_value("pending")
    if reviewer is not None:
        at.text_input(key="d_reviewer").set_value(reviewer)
    at.run()
    if row:
        select_row(at, row)
    no_exception(at)
    return at


def expire_claims(world) -> None:
    """Every claim as it is once its minutes have passed (the claims table's own column)."""
    con = sqlite3.connect(world.worklist)
    with con:
        con.execute("UPDATE claims SET expires_at = '2000-01-01T00:00:00.000000+00:00'")
    con.close()


def decide_first_case(app, world, reviewer: str = "dr b") -> int:
    """Another reviewer's session records 'agree' on the first case of the pending queue."""
    other = pending_page(app, world, reviewer=reviewer)
    case_id = shown_case(other)
    fill_form(other, "agree")
    button(other, "Record decision").click()
    other.run()
    no_exception(other)
    assert len(Worklist(world.worklist).history(case_id)) == 1
    return case_id


def test_a_decision_lands_on_the_case_shown_when_the_queue_shifts(app, fresh_world):
    a = pending_page(app, fresh_world, row=1, reviewer="dr a")
    ids = cases_table(a)["id"].tolist()
    shown = shown_case(a)
    assert shown == ids[1]
    fill_form(a, "disagree", ["Effusion"], "seen on row 1")
    # meanwhile another reviewer decides the case above it: the pending list loses its first row
    assert decide_first_case(app, fresh_world) == ids[0]
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    wl = Worklist(fresh_world.worklist)
    mine = wl.history(shown)
    assert mine["reviewer"].tolist() == ["dr a"] and mine["note"].tolist() == ["seen on row 1"]
    assert wl.history(ids[2]).empty  # the case that moved up to row 1: untouched
    assert any(f"case {shown}" in s.value for s in a.success)


def test_a_case_decided_meanwhile_is_refused_and_the_form_keeps_its_input(app, fresh_world):
    a = pending_page(app, fresh_world, reviewer="dr a")
    shown = shown_case(a)
    fill_form(a, "disagree", ["Effusion"], "my reading")
    expire_claims(fresh_world)  # dr a's claim ran out (5 minutes without a rerun) ...
    assert decide_first_case(app, fresh_world) == shown  # ... and dr b decided that case
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    [error] = a.error
    assert f"case {shown} was decided by dr b at" in error.value.replace("\\", "")
    assert "nothing was recorded" in error.value.replace("\\", "")
    wl = Worklist(fresh_world.worklist)
    assert wl.export_table(history=True)["reviewer"].tolist() == ["dr b"]  # only dr b's
    # the page still shows that case (it left the pending list) and says so; the form kept input
    assert shown_case(a) == shown
    assert any("is no longer in this list" in w.value for w in a.warning)
    assert form_widget(a, "text_area", "Note").value == "my reading"
    assert form_widget(a, "radio", "Decision").value == "disagree"


def test_after_a_save_the_next_cases_form_is_empty(app, fresh_world):
    a = pending_page(app, fresh_world)
    ids = cases_table(a)["id"].tolist()
    fill_form(a, "second_read", ["Mass"], "look again", reviewer="dr a")
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    assert Worklist(fresh_world.worklist).history(ids[0])["note"].tolist() == ["look again"]
    assert shown_case(a) == ids[1]  # the next case of the list it was decided in
    assert form_widget(a, "radio", "Decision").value == "agree"  # the first choice: untouched
    assert form_widget(a, "multiselect", "Findings present (if you disagree)").value == []
    assert form_widget(a, "text_area", "Note").value == ""
    assert a.text_input(key="d_reviewer").value == "dr a"  # who reviews is kept


def test_the_saved_case_stays_shown_with_an_empty_form_when_still_listed(app, fresh_world):
    at = app(fresh_world, PAGE)
    select_row(at, 3)
    shown = shown_case(at)
    fill_form(at, "disagree", ["Mass"], "first look", reviewer="dr a")
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert shown_case(at) == shown  # every status is listed: the case stays
    assert form_widget(at, "text_area", "Note").value == ""
    assert form_widget(at, "radio", "Decision").value == "agree"
    assert history_table(at)["note"].tolist() == ["first look"]


# -- issue 18 item 7: what others typed or named is shown as plain text ------------------------
def _planted_queue(world) -> str:
    """A case whose image name and model name carry Markdown, its film under the data folder."""
    from cxr.evaluation.predictions import predictions_frame
    rng = np.random.default_rng(3)
    frame = predictions_frame([f"{PLANTED[0]} {PLANTED[1]}.png"], rng.random((1, 14)),
                              np.full((1, 14), 0.3), np.array([True]))
    frame["source"] = [str(world.films[0])]
    frame.to_csv(world.root / "planted.csv", index=False)
    Worklist(world.worklist).import_predictions(world.root / "planted.csv",
                                                f"{PLANTED[1]} {PLANTED[0]}", "planted")
    return "planted"


def test_names_notes_and_findings_are_shown_as_text_not_markdown(app, fresh_world):
    queue = _planted_queue(fresh_world)
    at = app(fresh_world, PAGE)
    at.selectbox(key="f_queue").set_value(queue)
    at.run()
    no_exception(at)
    case_id = shown_case(at)
    fill_form(at, "disagree", ["Mass"], f"{PLANTED[0]} {PLANTED[1]}",
              reviewer=f"dr {PLANTED[1]} {PLANTED[0]}")
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert len(Worklist(fresh_world.worklist).history(case_id)) == 1
    assert unrendered(at) == []
    # ... and each is there, as the reader typed it: in plain-text cells, escaped in Markdown
    history = history_table(at)  # st.table cells: escaped, so they read as typed
    assert history["note"].tolist() == [plain.md(f"{PLANTED[0]} {PLANTED[1]}")]
    assert history["reviewer"].tolist() == [plain.md(f"dr {PLANTED[1]} {PLANTED[0]}")]
    assert cases_table(at)["image"].tolist() == [f"{PLANTED[0]} {PLANTED[1]}.png"]
    assert "\\!\\[x\\]" in at.subheader[0].value  # the image name, escaped
    assert any("\\*\\*bold\\*\\*" in s.value for s in at.success)  # the reviewer, escaped


# -- issue 18 item 8: case films only under the image roots, only through load_image ------------
def _film_case(world, path: str, name: str) -> int:
    from cxr.evaluation.predictions import predictions_frame
    frame = predictions_frame([name], np.full((1, 14), 0.2), np.full((1, 14), 0.4),
                              np.array([True]))
    frame["source"] = [path]
    csv = world.root / f"{name}.csv"
    frame.to_csv(csv, index=False)
    Worklist(world.worklist).import_predictions(csv, "fusion", f"paths-{name}")
    return f"paths-{name}"


def test_a_film_outside_the_image_roots_is_not_read(app, fresh_world, tmp_path, monkeypatch):
    import dashboard_env
    outside = dashboard_env.film_png(tmp_path / "elsewhere" / "film.png", 2)
    link = fresh_world.data / "tiny" / "images" / "link.png"
    link.symlink_to(outside)  # a link under the data folder to a film outside it
    for path, name in ((str(outside), "outside"), ("/etc/passwd", "passwd"),
                       (str(link), "link")):
        queue = _film_case(fresh_world, path, name)
        at = app(fresh_world, PAGE)
        at.selectbox(key="f_queue").set_value(queue)
        at.run()
        no_exception(at)
        assert any(i.value.startswith("Film not available here: ") and "outside the image "
                   "folders" in i.value.replace("\\", "") for i in at.info), name
        assert not at.error and not at.get("image"), name  # nothing read, nothing shown
    # a folder named in CXR_IMAGE_ROOTS is read (through load_image, with its limits)
    monkeypatch.setenv("CXR_IMAGE_ROOTS", str(outside.parent))
    at = app(fresh_world, PAGE)
    at.selectbox(key="f_queue").set_value("paths-outside")
    at.run()
    no_exception(at)
    assert len(at.get("image")) == 1 and not [i for i in at.info if "Film" in i.value]


# -- issue 18 item 11: a failed write is a message and the form keeps its input -----------------
@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   sqlite3.OperationalError("database or disk is full")])
def test_a_full_disk_is_a_message_and_the_form_keeps_its_input(app, fresh_world, monkeypatch,
                                                               error):
    at = app(fresh_world, PAGE)
    case_id = shown_case(at)
    fill_form(at, "disagree", ["Effusion"], "kept", reviewer="dr a")
    real, real_claim = Worklist.record_decision, Worklist.claim_case

    def full(*args, **kwargs):
        raise error
    monkeypatch.setattr(Worklist, "record_decision", full)
    monkeypatch.setattr(Worklist, "claim_case", full)  # the claim is a write too
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert any(c.value.startswith("This case could not be claimed for you") for c in at.caption)
    [message] = at.error
    assert message.value.startswith("Nothing was recorded: the disk holding the worklist is "
                                    "full") and "kept in the form" in message.value
    assert form_widget(at, "text_area", "Note").value == "kept"
    assert form_widget(at, "radio", "Decision").value == "disagree"
    assert Worklist(fresh_world.worklist).history(case_id).empty
    monkeypatch.setattr(Worklist, "record_decision", real)  # space again: the same form saves
    monkeypatch.setattr(Worklist, "claim_case", real_claim)
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert Worklist(fresh_world.worklist).history(case_id)["note"].tolist() == ["kept"]


def test_reading_the_worklist_writes_nothing(app, fresh_world):
    import sqlite3 as sql
    con = sql.connect(fresh_world.worklist)
    con.execute("PRAGMA journal_mode=DELETE")  # a worklist as a read-only copy might hold it
    con.close()
    before = fresh_world.worklist.stat().st_mtime_ns
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert len(cases_table(at)) == 6
    con = sql.connect(fresh_world.worklist)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    con.close()
    assert fresh_world.worklist.stat().st_mtime_ns == before


# -- issue 20 item 4: opening a case claims it; others see it read-only --------------------------
def test_an_open_case_is_read_only_for_other_reviewers_until_the_claim_ends(app, fresh_world):
    a = pending_page(app, fresh_world, reviewer="dr a")
    case_id = shown_case(a)
    claim = Worklist(fresh_world.worklist).cases()
    assert claim.loc[claim["id"] == case_id, "claimed_by"].item() == "dr a"
    b = pending_page(app, fresh_world, reviewer="dr b")
    assert shown_case(b) == case_id
    [busy] = [w.value for w in b.warning if "Being reviewed" in w.value]
    assert busy.startswith("Being reviewed by dr a until ") and " UTC" in busy
    assert form_widget(b, "text_area", "Note").disabled
    assert form_widget(b, "radio", "Decision").disabled
    assert button(b, "Record decision").disabled
    table = cases_table(b)
    assert table.loc[table["id"] == case_id, "claimed by"].item() == "dr a"
    # dr a's reruns renew the claim; it still holds
    a.run()
    b.run()
    assert any("Being reviewed by dr a" in w.value for w in b.warning)
    # ... until it runs out: then dr b's next rerun takes it and the form opens
    expire_claims(fresh_world)
    b.run()
    no_exception(b)
    assert not any("Being reviewed" in w.value for w in b.warning)
    assert not form_widget(b, "text_area", "Note").disabled
    cases = Worklist(fresh_world.worklist).cases()
    assert cases.loc[cases["id"] == case_id, "claimed_by"].item() == "dr b"
    # moving to another case gives the claim back
    select_row(b, 2)
    cases = Worklist(fresh_world.worklist).cases()
    assert cases.loc[cases["id"] == case_id, "claimed_by"].isna().all()
    assert cases.loc[cases["id"] == shown_case(b), "claimed_by"].item() == "dr b"


# -- issue 20 item 5: a database the page cannot use is a message, not a traceback ---------------
def test_an_unreachable_database_server_is_a_clear_message(app, fresh_world, monkeypatch):
    url = "postgresql+psycopg://cxr:pw-never-shown@127.0.0.1:9/cxr"  # nothing listens on 9
    monkeypatch.setattr(fresh_world, "worklist", url)
    at = app(fresh_world, PAGE, timeout=120)
    no_exception(at)
    [error] = at.error
    text = error.value.replace("\\", "")
    assert text.startswith("The worklist is not available right now: the worklist database "
                           "postgresql+psycopg://cxr:***@127.0.0.1:9/cxr cannot be reached")
    assert "reload this page when the database is back" in text
    assert "pw-never-shown" not in page_text(at)


def test_a_worklist_of_another_schema_says_what_to_run(app, fresh_world):
    con = sqlite3.connect(fresh_world.worklist)
    with con:
        con.execute("UPDATE alembic_version SET version_num = '0001'")
    con.close()
    at = app(fresh_world, PAGE)
    no_exception(at)
    [error] = at.error
    text = error.value.replace("\\", "")
    assert text.startswith("This dashboard cannot use the worklist as it is: ")
    assert "cxr worklist upgrade --db" in text


# -- issue 20 item 5: a team's PostgreSQL worklist: the server goes away and comes back --------
@pytest.fixture
def pg_world(fresh_world, pg_cluster, monkeypatch):
    """The world with its worklist in a fresh PostgreSQL database (the same six cases)."""
    from cxr.hashing import file_sha256
    url = pg_cluster.new_database()
    Worklist(url).import_predictions(fresh_world.root / "predictions.csv", "fusion",
                                     file_sha256(fresh_world.run_dir / "best.pt"),
                                     images_root=fresh_world.data / "tiny" / "images")
    monkeypatch.setattr(fresh_world, "worklist", url)
    return fresh_world


def test_postgres_server_stopped_and_back_while_the_page_is_open(app, pg_world, pg_cluster):
    from pg import PASSWORD
    a = app(pg_world, PAGE, timeout=120)
    a.text_input(key="d_reviewer").set_value("dr a")
    a.run()
    first = shown_case(a)
    fill_form(a, "disagree", ["Mass"], "before the outage")
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    # another session (a second replica's reviewer) sees it on its next rerun
    b = app(pg_world, PAGE, timeout=120)
    table = cases_table(b)
    assert table.loc[table["id"] == first, "status"].item() == "disagree"
    assert shown_case(a) == first  # every status listed: it stays
    select_row(a, [int(i) for i in cases_table(a)["id"]].index(first) ^ 1)  # a neighbour
    second = shown_case(a)
    assert second != first
    fill_form(a, "second_read", ["Nodule"], "typed during the outage")
    pg_cluster.stop()
    try:
        button(a, "Record decision").click()
        a.run()
        no_exception(a)
        [error] = a.error
        assert error.value.replace("\\", "").startswith("The worklist is not available right "
                                                        "now: the worklist database ")
        assert PASSWORD not in page_text(a)
    finally:
        pg_cluster.restart()
    a.run()  # the server is back: the page works again, with what was typed kept
    no_exception(a)
    assert not a.error and shown_case(a) == second
    assert form_widget(a, "text_area", "Note").value == "typed during the outage"
    assert a.text_input(key="d_reviewer").value == "dr a"
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    wl = Worklist(pg_world.worklist)
    assert wl.history(first)["note"].tolist() == ["before the outage"]  # nothing lost
    assert wl.history(second)["note"].tolist() == ["typed during the outage"]


def test_a_rerun_between_filling_and_submitting_does_not_hide_a_decision_made_meanwhile(
        app, fresh_world):
    """The form remembers what the case was when it was first drawn: a rerun after another
    reviewer decided the case (a filter, a Grad-CAM choice) does not make the old view current,
    so the submit is still refused; once refused and seen, the next submit stands."""
    a = pending_page(app, fresh_world, reviewer="dr a")
    shown = shown_case(a)
    fill_form(a, "disagree", ["Effusion"], "my reading")
    expire_claims(fresh_world)
    assert decide_first_case(app, fresh_world) == shown  # dr b decides it meanwhile
    a.run()  # any rerun of dr a's page before the submit
    no_exception(a)
    button(a, "Record decision").click()
    a.run()
    no_exception(a)
    [error] = a.error
    assert f"case {shown} was decided by dr b at" in error.value.replace("\\", "")
    wl = Worklist(fresh_world.worklist)
    assert wl.export_table(history=True)["reviewer"].tolist() == ["dr b"]
    button(a, "Record decision").click()  # dr a has seen it now, and decides again
    a.run()
    no_exception(a)
    assert wl.export_table(history=True)["reviewer"].tolist() == ["dr b", "dr a"]
