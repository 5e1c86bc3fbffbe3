"""A second reviewer's and an attacker's view of the worklist, on SQLite and on a real PostgreSQL
server: two submits of one view at the same moment (one wins), two reviewers claiming one case
at once (one holds it), workers leasing at once (no item twice), and a password that a URL
carries in its query never shown."""
from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cxr.csvsafe import safe_cell
from cxr.worklist import CaseChanged, Worklist
from cxr.worklist.db import mask, to_url

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/
from test_worklist import _predictions
from test_worklist_team import Clock


def _filled(tmp_path, target, clock=None) -> list[int]:
    _predictions(tmp_path / "p.csv")
    wl = Worklist(target, clock=clock)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    ids = [int(i) for i in wl.cases()["id"]]
    wl.close()
    return ids


def _at_once(*calls):
    """Run the calls in threads released together; their results (or exceptions), in order."""
    barrier, out = threading.Barrier(len(calls)), [None] * len(calls)

    def one(i, call):
        barrier.wait()
        try:
            out[i] = call()
        except Exception as exc:  # noqa: BLE001 - the result under test
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_two_submits_of_one_view_at_once_record_one_decision(tmp_path, wl_target, monkeypatch):
    """Two replicas submit on the same case with the same expected count at the same moment:
    the count check and the insert are one step (the case row is locked first), so one decision
    is recorded and the other is refused. The check is slowed down so that, without the lock,
    both would count 0 decisions before either inserted (PostgreSQL, READ COMMITTED)."""
    ids = _filled(tmp_path, wl_target)
    check = Worklist._check_unchanged

    def slow_check(self, con, case_id, expected):
        check(self, con, case_id, expected)
        time.sleep(0.3)  # between the count and the insert

    monkeypatch.setattr(Worklist, "_check_unchanged", slow_check)
    a, b = Worklist(wl_target, create=False), Worklist(wl_target, create=False)  # two replicas
    for case in ids[:3]:
        out = _at_once(
            lambda case=case: a.record_decision(case, "agree", "dr a", expected_decisions=0),
            lambda case=case: b.record_decision(case, "disagree", "dr b", expected_decisions=0))
        assert sum(isinstance(r, int) for r in out) == 1, out
        assert sum(isinstance(r, CaseChanged) for r in out) == 1, out
        history = a.history(case)
        assert len(history) == 1
        winner = "dr a" if isinstance(out[0], int) else "dr b"
        assert history["reviewer"].tolist() == [winner]
    for wl in (a, b):
        wl.close()


def test_two_reviewers_claiming_one_case_at_once_one_holds_it(tmp_path, wl_target):
    clock = Clock()
    ids = _filled(tmp_path, wl_target, clock)
    a, b = Worklist(wl_target, clock=clock), Worklist(wl_target, clock=clock)
    for case in ids[:3]:  # an unclaimed case
        out = _at_once(lambda case=case: a.claim_case(case, "dr a"),
                       lambda case=case: b.claim_case(case, "dr b"))
        assert [c.mine for c in out].count(True) == 1, out
        holder = next(c.holder for c in out if c.mine)
        assert {c.holder for c in out} == {holder}  # the loser is told who holds it
    clock.advance(minutes=10)  # every claim ran out: two others take one at once
    out = _at_once(lambda: a.claim_case(ids[0], "dr c"), lambda: b.claim_case(ids[0], "dr d"))
    assert [c.mine for c in out].count(True) == 1, out
    assert a.cases().set_index("id").loc[ids[0], "claimed_by"] == \
        next(c.holder for c in out if c.mine)
    for wl in (a, b):
        wl.close()


def test_workers_leasing_at_once_never_get_one_item_twice(tmp_path, wl_target):
    keys = [f"s{i:02d}" for i in range(24)]
    wl = Worklist(wl_target)
    wl.enqueue_work(keys, "abc")
    workers = [Worklist(wl_target) for _ in range(4)]

    def drain(w, name):
        got = []
        while batch := w.lease_work("abc", name, limit=2):
            got += batch
        return got

    out = _at_once(*(lambda w=w, i=i: drain(w, f"watcher-{i}") for i, w in enumerate(workers)))
    assert all(isinstance(r, list) for r in out), out
    leased = [k for r in out for k in r]
    assert sorted(leased) == keys  # every item once, none twice
    items = wl.work_items("abc").set_index("key")
    assert set(items["state"]) == {"leased"} and set(items["attempts"]) == {1}
    for w in (wl, *workers):
        w.close()


def test_a_password_in_the_urls_query_is_masked():
    url = "postgresql+psycopg://cxr@db.example/wl?password=s3cret&sslpassword=k3y&sslmode=require"
    for shown in (mask(url), mask(to_url(url))):
        assert "s3cret" not in shown and "k3y" not in shown, shown
        assert "password=***" in shown and "sslmode=require" in shown
    assert mask("postgresql+psycopg://cxr:s3cret@db/wl") == "postgresql+psycopg://cxr:***@db/wl"


def test_a_malformed_url_is_a_clear_error_that_hides_its_password():
    bad = "postgresql+psycopg://cxr:s3cret@db:port/wl"  # not a port number
    assert "s3cret" not in mask(bad)
    with pytest.raises(ValueError, match="neither a file path nor a database URL") as err:
        to_url(bad)
    assert "s3cret" not in str(err.value)


def test_a_formula_after_white_space_or_a_line_feed_is_made_text():
    for cell in (" =1+1", "  @SUM(A1)", "\u3000=1+1", "\n=1+1", " \t-2+3", "\nx"):
        assert safe_cell(cell) == "'" + cell, repr(cell)
    for cell in ("ok", "a = b", " ok", "x-1", ""):
        assert safe_cell(cell) == cell, repr(cell)


def test_a_lease_is_renewed_only_by_the_worker_still_holding_it(tmp_path, wl_target):
    clock = Clock()
    wl = Worklist(wl_target, clock=clock)
    wl.enqueue_work(["s1", "s2"], "abc")
    [a] = wl.lease_work("abc", "watcher-a", seconds=60)
    clock.advance(seconds=50)
    assert wl.renew_lease(a, "abc", "watcher-a", seconds=60)  # a long study: until 10:01:50
    clock.advance(seconds=30)  # 10:01:20: without the renewal the lease would have run out
    assert wl.lease_work("abc", "watcher-b", limit=5) == ["s2"]
    assert not wl.renew_lease(a, "abc", "watcher-b")  # not b's to renew
    clock.advance(seconds=40)  # a's lease ran out (a was interrupted) and b takes the study
    assert wl.lease_work("abc", "watcher-b", limit=5) == [a]
    assert not wl.renew_lease(a, "abc", "watcher-a")  # a must not read it again
    assert not wl.finish_work(a, "abc", "watcher-a")
    items = wl.work_items("abc").set_index("key")
    assert items.loc[a, ["state", "leased_by", "attempts"]].tolist() == ["leased", "watcher-b", 2]
    assert wl.finish_work(a, "abc", "watcher-b")
    assert not wl.renew_lease(a, "abc", "watcher-b")  # finished: nothing to renew
    with pytest.raises(ValueError, match="no work item 'nope'"):
        wl.renew_lease("nope", "abc", "watcher-a")
    wl.close()


def test_on_a_server_claims_and_leases_expire_by_the_servers_clock(tmp_path, pg_url,
                                                                     monkeypatch):
    """A watcher or dashboard whose clock is ten minutes fast must not take a live lease or
    claim of a machine whose clock is right: on a server, times come from the server's clock."""
    import sqlalchemy as sa

    from cxr.worklist import db

    real = db.local_now
    ids = _filled(tmp_path, pg_url)
    right = Worklist(pg_url)
    assert right.enqueue_work(["s1"], "abc") == 1
    assert right.lease_work("abc", "watcher-right", seconds=300) == ["s1"]
    assert right.claim_case(ids[0], "dr right", minutes=5).mine
    monkeypatch.setattr(db, "local_now", lambda: real() + timedelta(minutes=10))
    db._OFFSETS.clear()  # measured again: this process is now a machine whose clock is fast
    fast = Worklist(pg_url)
    assert fast.lease_work("abc", "watcher-fast", limit=5) == []  # the lease is live
    assert not fast.claim_case(ids[0], "dr fast").mine            # and so is the claim
    claim = fast.claim_case(ids[1], "dr fast", minutes=5)
    engine = sa.create_engine(pg_url)
    with engine.connect() as con:
        server_now = con.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    engine.dispose()
    expires = datetime.fromisoformat(claim.expires_at)
    assert abs(expires - (server_now + timedelta(minutes=5))) < timedelta(seconds=30)
