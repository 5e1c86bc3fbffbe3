"""cxr.worklist for a team, on SQLite and on a real PostgreSQL server: stale decisions refused,
simulated decisions, DICOM references, claims, work leases, schema versions (Alembic), copying
a worklist, read-only opening, CSV cells made safe, cases keyed by their path below the root."""
from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from cxr.cli import main
from cxr.csvsafe import csv_safe, safe_cell
from cxr.predict import film_key
from cxr.worklist import CaseChanged, SchemaMismatch, Worklist, migrate
from cxr.worklist.db import make_engine, to_url

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/
from pg import PASSWORD  # noqa: E402
from test_worklist import TODAY_SCHEMA, _legacy_db, _old_rows, _predictions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """An injectable clock: tests move time instead of sleeping."""
    def __init__(self):
        self.now = datetime(2026, 12, 8, 10, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += timedelta(**kw)


def _filled(tmp_path, target, clock=None, **kw) -> Worklist:
    _predictions(tmp_path / "p.csv", **kw)
    wl = Worklist(target, clock=clock)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    return wl


def test_a_decision_on_a_stale_view_is_refused_and_records_nothing(tmp_path, wl_target):
    clock = Clock()
    wl = _filled(tmp_path, wl_target, clock)
    case = int(wl.cases()["id"].iloc[0])
    seen = int(wl.cases().set_index("id").loc[case, "n_decisions"])  # both reviewers saw 0
    assert seen == 0
    clock.now = datetime(2026, 12, 8, 10, 31, 5, tzinfo=timezone.utc)
    wl.record_decision(case, "agree", "dr b", expected_decisions=seen)
    with pytest.raises(CaseChanged, match=rf"^case {case} was decided by dr b at 10:31 UTC "
                                          "while you were looking at it; nothing was recorded$"):
        wl.record_decision(case, "disagree", "dr a", corrected=["Mass"], expected_decisions=seen)
    assert wl.history(case)["reviewer"].tolist() == ["dr b"]
    wl.record_decision(case, "disagree", "dr a", expected_decisions=1)  # on the fresh view
    assert wl.history(case)["reviewer"].tolist() == ["dr b", "dr a"]
    with pytest.raises(CaseChanged, match="has 2 decision"):
        wl.record_decision(case, "agree", "dr a", expected_decisions=5)
    assert isinstance(CaseChanged("x"), ValueError)


def test_simulated_decisions_are_marked_in_history_cases_and_exports(tmp_path, wl_target):
    wl = _filled(tmp_path, wl_target)
    a, b = (int(i) for i in wl.cases()["id"].iloc[:2])
    wl.record_decision(a, "agree", "simulated reviewer", simulated=True)
    wl.record_decision(b, "agree", "dr a")
    assert wl.history(a)["simulated"].tolist() == [True]
    assert wl.history(b)["simulated"].tolist() == [False]
    table = wl.cases().set_index("id")
    assert table.loc[a, "simulated"] == True and table.loc[b, "simulated"] == False  # noqa: E712
    exported = wl.export_table(history=True).set_index("case_id")
    assert bool(exported.loc[a, "simulated"]) and not bool(exported.loc[b, "simulated"])


def test_dicom_references_are_imported_shown_marked_and_exported(tmp_path, wl_target):
    clock = Clock()
    _predictions(tmp_path / "p.csv", n=3)
    refs = {"img1.png": {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5",
                         "study_date": "20261201"}}
    wl = Worklist(wl_target, clock=clock)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc", dicom_refs=refs)
    table = wl.cases().set_index("image")
    assert table.loc["img1.png", ["study_uid", "series_uid", "sop_uid", "study_date"]]\
        .tolist() == ["1.2.3", "1.2.3.4", "1.2.3.4.5", "20261201"]
    assert table.loc[["img0.png", "img2.png"], "study_uid"].isna().all()
    case = int(table.loc["img1.png", "id"])
    assert pd.isna(table.loc["img1.png", "results_sent_at"])
    wl.mark_results_sent(case, "1.2.3.9")
    clock.advance(minutes=3)
    wl.mark_decision_sent(case)
    row = wl.cases().set_index("id").loc[case]
    assert row["result_sr_uid"] == "1.2.3.9"
    assert row["results_sent_at"] == "2026-12-08T10:00:00.000000+00:00"
    assert row["decision_sent_at"] == "2026-12-08T10:03:00.000000+00:00"
    with pytest.raises(ValueError, match="no case with id 999"):
        wl.mark_results_sent(999, "1.2")
    exported = wl.export_table()
    assert {"study_uid", "sop_uid", "result_sr_uid"} <= set(exported.columns)
    with pytest.raises(ValueError, match="not in the predictions, e.g. 'other.png'"):
        wl.import_predictions(tmp_path / "p.csv", "fusion", "x", dicom_refs={"other.png": {}})
    with pytest.raises(ValueError, match=r"unknown keys \['PatientName'\]"):
        wl.import_predictions(tmp_path / "p.csv", "fusion", "x",
                              dicom_refs={"img0.png": {"PatientName": "X"}})
    assert set(wl.cases()["checkpoint_hash"]) == {"abc"}  # the refused imports left nothing


def test_claims_keep_two_reviewers_apart_expire_and_renew(tmp_path, wl_target):
    clock = Clock()
    wl = _filled(tmp_path, wl_target, clock)
    case = int(wl.cases()["id"].iloc[0])
    mine = wl.claim_case(case, "dr a", minutes=5)
    assert mine.mine and mine.holder == "dr a"
    assert mine.expires_at == "2026-12-08T10:05:00.000000+00:00"
    theirs = wl.claim_case(case, "dr b")
    assert not theirs.mine and theirs.holder == "dr a" and theirs.expires_at == mine.expires_at
    row = wl.cases().set_index("id").loc[case]
    assert row["claimed_by"] == "dr a" and row["claim_expires"] == mine.expires_at
    clock.advance(minutes=4)
    renewed = wl.claim_case(case, "dr a", minutes=5)  # still working: renewed from now
    assert renewed.mine and renewed.expires_at == "2026-12-08T10:09:00.000000+00:00"
    clock.advance(minutes=3)
    assert not wl.claim_case(case, "dr b").mine  # 10:07: the renewal still holds
    clock.advance(minutes=3)                      # 10:10: expired by itself
    assert pd.isna(wl.cases().set_index("id").loc[case, "claimed_by"])
    taken = wl.claim_case(case, "dr b")
    assert taken.mine and taken.holder == "dr b"
    wl.release_claim(case, "dr a")  # not dr a's any more: nothing changes
    assert wl.cases().set_index("id").loc[case, "claimed_by"] == "dr b"
    wl.release_claim(case, "dr b")
    assert wl.claim_case(case, "dr a").mine
    with pytest.raises(ValueError, match="no case with id 999"):
        wl.claim_case(999, "dr a")
    with pytest.raises(ValueError, match="reviewer"):
        wl.claim_case(case, " ")


def test_work_leases_once_each_and_an_expired_lease_is_picked_up_again(tmp_path, wl_target):
    clock = Clock()
    wl = Worklist(wl_target, clock=clock)
    assert wl.enqueue_work(["s1", "s2", "s3"], "abc") == 3
    assert wl.enqueue_work(["s2", "s3", "s4"], "abc") == 1  # known keys are kept as they are
    assert wl.enqueue_work(["s1"], "other") == 1           # per checkpoint
    a = wl.lease_work("abc", "watcher-a", limit=2, seconds=60)
    b = wl.lease_work("abc", "watcher-b", limit=5, seconds=60)
    assert len(a) == 2 and len(b) == 2 and not set(a) & set(b)
    assert wl.lease_work("abc", "watcher-c") == []  # all leased
    assert wl.finish_work(a[0], "abc", "watcher-a", state="done")
    clock.advance(seconds=61)  # watcher-a crashed holding a[1]; b's lease ran out too
    again = wl.lease_work("abc", "watcher-c", limit=5)
    assert sorted(again) == sorted([a[1], *b])
    assert not wl.finish_work(a[1], "abc", "watcher-a")  # the lease passed on: not recorded
    assert wl.finish_work(a[1], "abc", "watcher-c", state="failed", detail="unreadable")
    items = wl.work_items("abc").set_index("key")
    assert items.loc[a[0], "state"] == "done" and items.loc[a[0], "attempts"] == 1
    assert items.loc[a[1], ["state", "leased_by", "attempts", "detail"]].tolist() == \
        ["failed", "watcher-c", 2, "unreadable"]
    assert wl.enqueue_work([a[0]], "abc") == 0
    assert wl.lease_work("abc", "watcher-d", limit=9) == []  # done and failed stay finished
    assert list(wl.work_items().columns) == ["key", "checkpoint_hash", "state", "leased_by",
                                             "lease_until", "attempts", "updated_at", "detail"]
    with pytest.raises(ValueError, match="no work item 'nope'"):
        wl.finish_work("nope", "abc", "watcher-a")
    with pytest.raises(ValueError, match="state 'maybe'"):
        wl.finish_work(b[0], "abc", "watcher-c", state="maybe")


def test_the_migrations_are_the_revisions_the_code_knows():
    scripts = ScriptDirectory.from_config(migrate.config())
    assert scripts.get_current_head() == migrate.REVISIONS[-1]
    assert tuple(reversed([r.revision for r in scripts.walk_revisions()])) == migrate.REVISIONS


def _tables(target) -> dict[str, set[str]]:
    engine = sa.create_engine(to_url(target))
    inspector = sa.inspect(engine)
    out = {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
    engine.dispose()
    return out


def test_a_worklist_made_by_the_previous_code_is_upgraded_in_place(tmp_path, wl_target, capsys):
    """main's schema (all of its hand-written migrations) with cases and decisions: refused for
    writing, upgraded by `cxr worklist upgrade`, everything kept, the new columns there."""
    rows = _old_rows()
    for row in rows:
        row.update({"uncertainty_rule": "any" if "uncertainty" in row else None})
    _legacy_db(wl_target, TODAY_SCHEMA, rows, [(1, "agree", "dr a", "2026-01-02"),
                                               (1, "disagree", "dr b", "2026-01-03"),
                                               (2, "second_read", "dr a", "2026-01-04")])
    with pytest.raises(SchemaMismatch, match="worklist upgrade --db"):
        Worklist(wl_target)
    reader = Worklist(wl_target, create=False)
    assert reader.counts() == {"cases": 2, "pending": 0, "decided": 2}  # counting reads any
    with pytest.raises(SchemaMismatch, match="made before schema migrations"):
        reader.cases()
    assert main(["worklist", "upgrade", "--db", wl_target]) == 0
    out = capsys.readouterr().out
    assert "upgraded to revision 0002 (was legacy)" in out and PASSWORD not in out
    wl = Worklist(wl_target)
    table = wl.cases().set_index("image")
    assert table.loc["old.png", ["status", "n_decisions"]].tolist() == ["disagree", 2]
    assert table.loc["ext.png", "status"] == "second_read"
    assert wl.history(int(table.loc["old.png", "id"]))["reviewer"].tolist() == ["dr a", "dr b"]
    assert table.loc["old.png", "uncertainty"] == pytest.approx(0.3)
    assert not wl.history(int(table.loc["old.png", "id"]))["simulated"].any()
    tables = _tables(wl_target)
    assert {"claims", "work_items", "alembic_version"} <= set(tables)
    assert {"study_uid", "sop_uid", "result_sr_uid"} <= tables["cases"]
    assert main(["worklist", "upgrade", "--db", wl_target]) == 0
    assert "already at revision 0002" in capsys.readouterr().out
    wl.record_decision(int(table.loc["ext.png", "id"]), "agree", "dr c")  # and it is writable


def test_older_and_newer_schemas_are_refused_with_what_to_run(tmp_path, wl_target):
    url = to_url(wl_target)
    engine = make_engine(url)
    with engine.begin() as con:  # a worklist made by the code of revision 0001
        command.upgrade(migrate.config(con), "0001")
    with pytest.raises(SchemaMismatch, match="revision 0001, older than this code's 0002: run "
                                             "`cxr worklist upgrade --db"):
        Worklist(wl_target)
    assert main(["worklist", "upgrade", "--db", wl_target]) == 0
    Worklist(wl_target).counts()
    with engine.begin() as con:  # a worklist a newer version of cxr upgraded
        con.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    for create in (True, False):
        with pytest.raises(SchemaMismatch, match="revision 0099, newer than this code knows"):
            Worklist(wl_target, create=create).cases()
    assert main(["worklist", "upgrade", "--db", wl_target]) == 1  # refused, nothing changed


def test_copy_moves_every_case_and_decision_and_checks_them(tmp_path, wl_target, capsys):
    source = tmp_path / "local.sqlite"
    _predictions(tmp_path / "p.csv", rule="mean", readout=True)
    wl = Worklist(source)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc",
                          dicom_refs={"img2.png": {"study_uid": "1.2.3"}})
    ids = [int(i) for i in wl.cases()["id"]]
    for k, case in enumerate(ids * 2):
        wl.record_decision(case, ("agree", "disagree")[k % 2], f"dr {k % 3}", note=f"n{k}",
                           corrected=["Mass"] if k % 2 else None, simulated=k == 0)
    wl.enqueue_work(["s1", "s2"], "abc")
    assert main(["worklist", "copy", "--from", str(source), "--to", wl_target]) == 0
    out = capsys.readouterr().out
    assert "6 cases (0 already there), 12 decisions" in out and "checked" in out
    assert PASSWORD not in out
    copied = Worklist(wl_target)
    cols = ["image", "status", "n_decisions", "reviewer", "note", "prob_Mass", "call_Mass",
            "study_uid", "simulated"]
    a = wl.cases(sort="image", ascending=True)[cols]
    b = copied.cases(sort="image", ascending=True)[cols]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    def by_image(w):
        fields = ["decision", "reviewer", "note", "created_at", "simulated"]
        return {r.image: w.history(r.id)[fields].values.tolist() for r in w.cases().itertuples()}

    assert by_image(wl) == by_image(copied)  # the whole history, in order
    assert len(copied.work_items()) == 2
    # a non-empty target is refused; --append adds only what is missing
    assert main(["worklist", "copy", "--from", str(source), "--to", wl_target]) == 1
    assert "already has 6 cases: nothing was copied (add --append" in capsys.readouterr().err
    wl.record_decision(ids[0], "second_read", "dr z")
    _predictions(tmp_path / "q.csv", n=2)
    wl.import_predictions(tmp_path / "q.csv", "cnn", "def")
    assert main(["worklist", "copy", "--from", str(source), "--to", wl_target, "--append"]) == 0
    assert "2 cases (6 already there), 1 decisions (12 already there)" in capsys.readouterr().out
    assert copied.counts() == wl.counts() and by_image(wl) == by_image(copied)
    assert main(["worklist", "copy", "--from", str(tmp_path / "none.sqlite"), "--to",
                 wl_target, "--append"]) == 1


def test_reading_never_writes(tmp_path):
    """A worklist in a folder this process cannot write (root without its DAC override, as a
    read-only mount would be): every read works, a write fails with a message."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop the file-permission override")
    folder = tmp_path / "ro"
    folder.mkdir()
    wl = _filled(tmp_path, folder / "wl.sqlite")
    wl.record_decision(int(wl.cases()["id"].iloc[0]), "agree", "dr a")
    wl.close()
    assert sorted(p.name for p in folder.iterdir()) == ["wl.sqlite"]  # WAL files gone
    before = (folder / "wl.sqlite").read_bytes()
    script = """
import sys
from cxr.worklist import Worklist
wl = Worklist(sys.argv[1], create=False)
assert wl.counts() == {"cases": 6, "pending": 5, "decided": 1}, wl.counts()
assert len(wl.cases(status="pending")) == 5 and len(wl.sources()) == 1
assert len(wl.history(int(wl.cases()["id"].iloc[0]))) <= 1
assert len(wl.export_table(history=True)) == 1
try:
    wl.record_decision(int(wl.cases()["id"].iloc[0]), "agree", "dr b")
except OSError as exc:
    print("write refused:", exc)
"""
    (folder / "wl.sqlite").chmod(0o444)
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    try:
        done = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search,"
                               "-fowner", sys.executable, "-c", script, str(folder / "wl.sqlite")],
                              capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "write refused: worklist" in done.stdout and "readonly" in done.stdout
    assert (folder / "wl.sqlite").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["wl.sqlite"]


def test_csv_cells_that_a_spreadsheet_would_run_are_made_text(tmp_path, wl_target):
    assert [safe_cell(v) for v in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "ok", "a=b")] \
        == ["'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "ok", "a=b"]
    frame = csv_safe(pd.DataFrame({"note": ["=cmd|' /C calc'!A0", None], "p": [-0.5, 1.0],
                                   "n": [-3, 4]}))
    assert frame["note"].tolist()[0] == "'=cmd|' /C calc'!A0" and pd.isna(frame["note"][1])
    assert frame["p"].tolist() == [-0.5, 1.0] and frame["n"].tolist() == [-3, 4]  # numbers
    wl = _filled(tmp_path, wl_target)
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "disagree", "=HYPERLINK(\"http://x\")", note="-5 mm, @home")
    for history in (False, True):
        path = wl.export_csv(tmp_path / f"{history}.csv", history=history)
        written = pd.read_csv(path, keep_default_na=False)
        row = written[written["reviewer"] != ""].iloc[0]
        assert row["reviewer"] == "'=HYPERLINK(\"http://x\")" and row["note"] == "'-5 mm, @home"
        assert not any(str(v).startswith(("=", "+", "-", "@")) for v in written.to_numpy().ravel())
    table = wl.export_table()  # the Triage page's download: the same cells
    assert table.set_index("id").loc[case, "note"] == "'-5 mm, @home"
    assert (table["prob_Mass"] == wl.cases(sort="image", ascending=True)["prob_Mass"]).all()


def test_equal_file_names_in_two_folders_are_two_cases(tmp_path, wl_target):
    root = tmp_path / "incoming"
    for study in ("study1", "study2"):
        (root / study).mkdir(parents=True)
        (root / study / "IM0001").write_bytes(b"x")
    assert film_key(root / "study1" / "IM0001", [str(root)]) == "study1/IM0001"
    assert film_key(root / "study2" / "IM0001", [root / "study1", root]) == "study2/IM0001"
    assert film_key(tmp_path / "named.dcm", [str(tmp_path / "named.dcm")]) == "named.dcm"
    df = _predictions(tmp_path / "p.csv", n=2, with_source=False)
    df["Image Index"] = ["study1/IM0001", "study2/IM0001"]
    df.to_csv(tmp_path / "p.csv", index=False)
    wl = Worklist(wl_target)
    assert wl.import_predictions(tmp_path / "p.csv", "fusion", "abc",
                                 images_root=root)["inserted"] == 2
    table = wl.cases(sort="image", ascending=True)
    assert table["image"].tolist() == ["study1/IM0001", "study2/IM0001"]
    assert table["path"].tolist() == [str(root / "study1" / "IM0001"),
                                      str(root / "study2" / "IM0001")]
    assert len(set(table["id"])) == 2


def test_upgrade_makes_an_empty_team_database_ready(pg_url, capsys, tmp_path):
    assert main(["worklist", "upgrade", "--db", pg_url]) == 0
    assert "schema created at revision 0002" in capsys.readouterr().out
    assert Worklist(pg_url, create=False).counts() == {"cases": 0, "pending": 0, "decided": 0}
    assert main(["worklist", "upgrade", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "none.sqlite does not exist (nothing to upgrade)" in capsys.readouterr().err


def test_a_full_disk_is_a_message_naming_the_file_and_loses_nothing(tmp_path):
    """SQLite's "database or disk is full" (made here by capping the file's pages) comes out as
    an OSError naming the worklist, the import is all or nothing, earlier decisions stay."""
    from sqlalchemy import event

    wl = _filled(tmp_path, tmp_path / "wl.sqlite")
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", "dr a")
    with wl.engine.connect() as con:
        pages = con.exec_driver_sql("PRAGMA page_count").scalar()
    wl.close()
    event.listen(wl.engine, "connect",
                 lambda con, _r: con.execute(f"PRAGMA max_page_count={pages + 2}"))
    df = _predictions(tmp_path / "big.csv", n=40, seed=3)
    df[[c for c in df.columns if c.startswith("std_")]] /= 100
    df.to_csv(tmp_path / "big.csv", index=False)
    with pytest.raises(OSError, match=r"wl\.sqlite: database or disk is full"):
        wl.import_predictions(tmp_path / "big.csv", "fusion", "big")
    assert wl.counts() == {"cases": 6, "pending": 5, "decided": 1}
    assert wl.history(case)["reviewer"].tolist() == ["dr a"]
    assert main(["worklist", "import", str(tmp_path / "big.csv"), "--model", "m",
                 "--checkpoint-hash", "big", "--db", str(tmp_path / "wl.sqlite")]) == 0
