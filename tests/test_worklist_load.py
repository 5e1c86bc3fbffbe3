"""The worklist under load and faults, on SQLite and on a real PostgreSQL server: 8 reviewer
processes x 200 decisions while 2 processes import, workers leasing at once, a writer killed
inside its import, the server stopped and started again under an open Worklist."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cxr.cli import main
from cxr.worklist import Worklist, WorklistUnavailable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: pg, the worker script
from pg import PASSWORD  # noqa: E402
from test_worklist import _predictions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "worklist_workers.py"


def _many(path: Path, n: int, seed: int) -> None:
    """_predictions with n rows (std scaled so it stays a probability's std)."""
    df = _predictions(path, n=n, seed=seed)
    std = [c for c in df.columns if c.startswith("std_")]
    df[std] = df[std] / 100
    df.to_csv(path, index=False)


def _start(action: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(WORKERS), action, json.dumps(kwargs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _results(procs: list[subprocess.Popen], go: Path) -> list[dict]:
    go.write_text("go")
    done = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, done):
        assert p.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in done]


def test_eight_reviewers_and_two_importers_at_once_lose_nothing(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv", n=16)
    _many(tmp_path / "more.csv", n=300, seed=1)
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    ids = [int(i) for i in wl.cases()["id"]]
    go = tmp_path / "go"
    procs = [_start("reviewer", db=wl_target, ids=ids, name=f"r{k}", n=200, go=str(go))
             for k in range(8)]
    procs += [_start("importer", db=wl_target, csv=str(tmp_path / "more.csv"),
                     checkpoint_hash="new", go=str(go)) for _ in range(2)]
    results = _results(procs, go)
    imports = results[8:]
    assert sum(r["inserted"] for r in imports) == 300  # each case once, whoever won
    assert sorted(r["inserted"] + r["skipped"] for r in imports) == [300, 300]
    table = wl.cases()
    assert len(table) == 316 and not table.duplicated(["image", "checkpoint_hash"]).any()
    history = pd.concat([wl.history(i) for i in ids])
    assert len(history) == 1600
    assert set(history["note"]) == {f"r{k}-{i}" for k in range(8) for i in range(200)}
    for _, one in history.groupby("case_id"):  # in order: ids follow time, and each reviewer's
        one = one.sort_values("id")             # own decisions keep their order
        assert one["created_at"].is_monotonic_increasing
        for _, mine in one.groupby("reviewer"):
            steps = mine["note"].str.split("-").str[1].astype(int)
            assert steps.is_monotonic_increasing
    assert table.set_index("id").loc[ids, "n_decisions"].sum() == 1600


def test_workers_never_lease_one_item_twice(tmp_path, wl_target):
    wl = Worklist(wl_target)
    keys = [f"1.2.840.{i}" for i in range(60)]
    assert wl.enqueue_work(keys, "abc") == 60
    go = tmp_path / "go"
    got = [r["keys"] for r in _results(
        [_start("leaser", db=wl_target, checkpoint_hash="abc", name=f"w{k}", go=str(go))
         for k in range(4)], go)]
    flat = [k for mine in got for k in mine]
    assert sorted(flat) == sorted(keys)  # every item once, none twice
    items = wl.work_items("abc")
    assert (items["state"] == "done").all() and (items["attempts"] == 1).all()


def test_a_writer_killed_inside_its_import_leaves_no_partial_import(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv", n=4)
    _many(tmp_path / "big.csv", n=400, seed=2)
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", "dr a")
    flag = tmp_path / "in-transaction"
    proc = _start("import_and_hang", db=wl_target, csv=str(tmp_path / "big.csv"),
                  checkpoint_hash="big", flag=str(flag))
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the importer never reached its commit"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # all 400 rows were sent, the commit never happened
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()
    proc.stderr.close()
    after = Worklist(wl_target)
    assert after.counts() == {"cases": 4, "pending": 3, "decided": 1}
    assert "big" not in set(after.cases()["checkpoint_hash"])
    assert after.import_predictions(tmp_path / "big.csv", "fusion", "big")["inserted"] == 400


def test_the_server_going_away_is_a_clear_error_and_nothing_is_lost(tmp_path, pg_cluster,
                                                                   pg_url):
    _predictions(tmp_path / "p.csv")
    wl = Worklist(pg_url)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", "dr a", note="before")
    pg_cluster.stop()
    try:
        for action in (wl.cases, wl.counts, lambda: wl.record_decision(case, "agree", "dr b")):
            with pytest.raises(WorklistUnavailable) as err:
                action()
            message = str(err.value)
            assert "cannot be reached" in message and "cxr:***@127.0.0.1" in message
            assert PASSWORD not in message and "Traceback" not in message
        with pytest.raises(WorklistUnavailable):
            Worklist(pg_url, create=False)  # a page opening it meanwhile: the same message
    finally:
        pg_cluster.restart()
    history = wl.history(case)  # the same Worklist works again: stale connections replaced
    assert history["note"].tolist() == ["before"]
    wl.record_decision(case, "disagree", "dr b")
    assert Worklist(pg_url).cases().set_index("id").loc[case, "n_decisions"] == 2


def test_a_password_never_appears_in_messages(pg_cluster, pg_url, capsys):
    wl = Worklist(pg_url)
    assert wl.url_masked == pg_url.replace(PASSWORD, "***") and PASSWORD not in wl.url_masked
    wrong = pg_url.replace(PASSWORD, "not-the-password")
    with pytest.raises(WorklistUnavailable) as err:
        Worklist(wrong)
    assert "not-the-password" not in str(err.value) and "***" in str(err.value)
    assert "password authentication failed" in str(err.value)
    assert main(["worklist", "export", "--db", wrong, "--out", "/nonexistent/x.csv"]) == 1
    printed = capsys.readouterr().err
    assert "cannot be reached" in printed and "not-the-password" not in printed
    assert "Traceback" not in printed
    engine = sa.create_engine(pg_url)  # and nothing of it reached the server's tables
    with engine.connect() as con:
        assert con.execute(sa.text("SELECT count(*) FROM cases")).scalar() == 0
    engine.dispose()
