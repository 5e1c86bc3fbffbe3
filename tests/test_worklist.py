"""cxr.worklist: import, filters, sort, decision history, reopen, CLI, concurrent writers, old
schemas upgraded; every test on SQLite and on a real PostgreSQL server (wl_target)."""
from __future__ import annotations

import multiprocessing
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from cxr.cli import main
from cxr.labels import FINDINGS
from cxr.hashing import file_sha256
from cxr.worklist import SchemaMismatch, Worklist


def _predictions(path, n=6, with_std=True, with_source=True, seed=0, rule=None, readout=False):
    """A predictions.csv like `cxr predict` wrote before uncertainty rules (flags by any std;
    `rule` given: as it writes now, with `uncertainty` and `uncertainty_rule`); case i has max
    std 0.02 * (i + 1), the others half that. readout=True: with a readout's columns (READOUT
    below: case i has i positive calls, Effusion uncertain in case 0, ood score 5 * i)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"Image Index": [f"img{i}.png" for i in range(n)]})
    probs = rng.uniform(0.0, 0.4, size=(n, 14))
    probs[0, FINDINGS.index("Effusion")] = 0.9  # only case 0 is an Effusion at 0.5
    for j, f in enumerate(FINDINGS):
        df[f"prob_{f}"] = probs[:, j]
    if with_std:
        for j, f in enumerate(FINDINGS):
            df[f"std_{f}"] = [0.02 * (i + 1) * (0.5 if j else 1.0) for i in range(n)]
    df["uncertain"] = [0.02 * (i + 1) > 0.1 for i in range(n)]
    if rule:
        std = df[[f"std_{f}" for f in FINDINGS]].to_numpy()
        score = std.mean(axis=1) if rule == "mean" else std.max(axis=1)
        df["uncertain"], df["uncertainty"], df["uncertainty_rule"] = score > 0.1, score, rule
    if readout:
        df[[f"cal_{f}" for f in FINDINGS]] = probs * 0.5
        for j, f in enumerate(FINDINGS):
            df[f"call_{f}"] = ["positive" if j < i else "negative" for i in range(n)]
        df.loc[0, "call_Effusion"] = "uncertain"
        df["operating_point"] = "sensitivity"
        df["ood_score"] = [5.0 * i for i in range(n)]
        df["ood"] = [5.0 * i > 12 for i in range(n)]  # cases 3, 4, 5
    if with_source:
        df["source"] = [f"/films/img{i}.png" for i in range(n)]
    df.to_csv(path, index=False)
    return df


def test_import_sorts_by_uncertainty_and_is_idempotent(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv")
    wl = Worklist(wl_target)
    assert wl.import_predictions(tmp_path / "p.csv", "fusion", "abc") == {"inserted": 6,
                                                                          "skipped": 0}
    assert wl.import_predictions(tmp_path / "p.csv", "fusion", "abc") == {"inserted": 0,
                                                                          "skipped": 6}
    table = wl.cases()
    assert list(table["image"]) == [f"img{i}.png" for i in (5, 4, 3, 2, 1, 0)]
    assert table["uncertainty"].tolist() == pytest.approx([0.12, 0.10, 0.08, 0.06, 0.04, 0.02])
    assert table["mean_std"].iloc[0] == pytest.approx(0.12 * (1 + 13 * 0.5) / 14)
    assert table["uncertain"].tolist() == [1, 0, 0, 0, 0, 0]
    assert table["path"].iloc[0] == "/films/img5.png"
    assert set(table["status"]) == {"pending"}
    # the same images from another checkpoint are other cases
    assert wl.import_predictions(tmp_path / "p.csv", "densenet121", "def")["inserted"] == 6
    assert len(wl.cases()) == 12


def test_import_stores_the_rules_score_and_both_summaries(tmp_path, wl_target):
    _predictions(tmp_path / "mean.csv", rule="mean")
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "mean.csv", "fusion", "abc")
    table = wl.cases()
    mean_std = [0.02 * (i + 1) * (1 + 13 * 0.5) / 14 for i in (5, 4, 3, 2, 1, 0)]
    assert (table["uncertainty_rule"] == "mean").all()
    assert table["uncertainty"].tolist() == pytest.approx(mean_std)
    assert table["mean_std"].tolist() == pytest.approx(mean_std)
    assert table["max_std"].tolist() == pytest.approx([0.12, 0.10, 0.08, 0.06, 0.04, 0.02])
    assert table["uncertain"].tolist() == [0] * 6  # mean std 0.065 at most: none above 0.1
    assert list(wl.cases(sort="max_std")["image"])[0] == "img5.png"
    # a legacy CSV (flags by any std, no rule column) is stored as what it is: rule 'any'
    _predictions(tmp_path / "old.csv")
    wl.import_predictions(tmp_path / "old.csv", "fusion", "old")
    old = wl.cases().query("checkpoint_hash == 'old'")
    assert (old["uncertainty_rule"] == "any").all()
    assert old["uncertainty"].tolist() == pytest.approx(old["max_std"].tolist())


OLD_SCHEMA = f"""
CREATE TABLE cases (
    id INTEGER PRIMARY KEY, image TEXT NOT NULL, path TEXT, model TEXT NOT NULL,
    checkpoint_hash TEXT NOT NULL, {", ".join(f"prob_{f} REAL NOT NULL" for f in FINDINGS)},
    {", ".join(f"std_{f} REAL" for f in FINDINGS)}, uncertainty REAL, mean_std REAL,
    uncertain INTEGER NOT NULL, source_csv TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (image, checkpoint_hash));
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases(id),
    decision TEXT NOT NULL, corrected TEXT, note TEXT NOT NULL DEFAULT '',
    reviewer TEXT NOT NULL, created_at TEXT NOT NULL);
"""  # the worklist before uncertainty rules (uncertainty = max std)


TODAY_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY, image TEXT NOT NULL, path TEXT, model TEXT NOT NULL,
    checkpoint_hash TEXT NOT NULL, {", ".join(f"prob_{f} REAL NOT NULL" for f in FINDINGS)},
    {", ".join(f"std_{f} REAL" for f in FINDINGS)}, uncertainty REAL, uncertainty_rule TEXT,
    mean_std REAL, max_std REAL, uncertain INTEGER NOT NULL,
    {", ".join(f"cal_{f} REAL" for f in FINDINGS)}, {", ".join(f"call_{f} TEXT" for f in FINDINGS)},
    operating_point TEXT, ood_score REAL, ood INTEGER, source_csv TEXT NOT NULL,
    created_at TEXT NOT NULL, UNIQUE (image, checkpoint_hash));
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases(id),
    decision TEXT NOT NULL CHECK (decision IN ('agree', 'disagree', 'second_read')),
    corrected TEXT, note TEXT NOT NULL DEFAULT '', reviewer TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_case ON decisions(case_id, id);
"""  # the worklist as main's hand-written schema made it (all of its _MIGRATIONS applied)


def _legacy_db(target: str, schema: str, rows: list[dict], decisions: list[tuple]) -> None:
    """A worklist as older code made it: `schema`, the cases `rows`, then `decisions`
    (case_id, decision, reviewer, created_at); no alembic_version. On PostgreSQL the same
    tables (SERIAL for SQLite's integer keys)."""
    if "://" not in target:
        con = sqlite3.connect(target)
        con.executescript(schema)
    else:
        con = sqlalchemy.create_engine(target).raw_connection()
        schema = schema.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY")
        schema = re.sub(r"\b((?:prob|std|cal|call)_\w+)", r'"\1"', schema)  # mixed case
        for statement in filter(str.strip, schema.replace("id INTEGER PRIMARY KEY,",
                                                          "id SERIAL PRIMARY KEY,").split(";")):
            con.cursor().execute(statement)
    mark = "?" if "://" not in target else "%s"
    for row in rows:
        names = row if "://" not in target else [f'"{c}"' for c in row]
        con.cursor().execute(f"INSERT INTO cases ({', '.join(names)}) "
                             f"VALUES ({', '.join([mark] * len(row))})", list(row.values()))
    for d in decisions:
        con.cursor().execute("INSERT INTO decisions (case_id, decision, reviewer, created_at) "
                             f"VALUES ({', '.join([mark] * 4)})", d)
    con.commit()
    con.close()


def _old_rows() -> list[dict]:
    std = [0.3] + [0.01] * 13
    base = {"model": "fusion", "source_csv": "p.csv", "created_at": "2026-01-01",
            **{f"prob_{f}": 0.2 for f in FINDINGS}}
    return [{**base, "image": "old.png", "checkpoint_hash": "abc", "uncertain": 1,
             "uncertainty": 0.3, "mean_std": sum(std) / 14,
             **{f"std_{f}": v for f, v in zip(FINDINGS, std)}},
            {**base, "image": "ext.png", "checkpoint_hash": "def", "uncertain": 0}]  # no std


def test_a_worklist_from_before_uncertainty_rules_opens_and_is_migrated(tmp_path, wl_target):
    db = wl_target
    _legacy_db(db, OLD_SCHEMA, _old_rows(), [(1, "agree", "dr a", "2026-01-02")])
    with pytest.raises(SchemaMismatch, match="made before schema migrations: run `cxr "
                                             "worklist upgrade --db"):
        Worklist(db)  # writing code refuses an old schema, saying what to run
    assert main(["worklist", "upgrade", "--db", db]) == 0
    wl = Worklist(db)
    table = wl.cases().set_index("image")
    assert table.loc["old.png", "uncertainty_rule"] == "any"  # it was flagged by the max std
    assert table.loc["old.png", "max_std"] == pytest.approx(0.3)
    assert table.loc["old.png", "uncertainty"] == pytest.approx(0.3)
    assert table.loc["old.png", "status"] == "agree"  # decisions survive
    assert pd.isna(table.loc["ext.png", "uncertainty_rule"]) and pd.isna(table.loc["ext.png",
                                                                                   "max_std"])
    assert table[["operating_point", "ood", "call_Effusion"]].isna().all(axis=None)  # no readout
    assert table["positive_calls"].isna().all()
    _predictions(tmp_path / "p.csv", rule="mean", readout=True)
    assert wl.import_predictions(tmp_path / "p.csv", "fusion", "new")["inserted"] == 6
    assert Worklist(db).counts() == {"cases": 8, "pending": 7, "decided": 1}  # reopens as is
    assert set(Worklist(db).cases()["uncertainty_rule"].dropna()) == {"any", "mean"}
    assert len(Worklist(db).cases(call="positive")) == 5


def test_calls_and_ood_are_stored_filtered_and_sorted(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv", rule="mean", readout=True)
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    table = wl.cases(sort="image", ascending=True)
    assert (table["operating_point"] == "sensitivity").all()
    assert table["positive_calls"].tolist() == [0, 1, 2, 3, 4, 5]
    assert table["call_Atelectasis"].tolist() == ["negative"] + ["positive"] * 5
    assert table["ood"].tolist() == [0, 0, 0, 1, 1, 1]
    assert table["cal_Effusion"].iloc[0] == pytest.approx(0.45)
    images = lambda **kw: wl.cases(sort="image", ascending=True, **kw)["image"].tolist()  # noqa
    assert images(call="positive") == [f"img{i}.png" for i in range(1, 6)]  # any positive call
    assert images(call="uncertain") == ["img0.png"]
    assert images(call="positive", call_finding="Cardiomegaly") == ["img2.png", "img3.png",
                                                                    "img4.png", "img5.png"]
    assert images(call="negative", call_finding="Effusion") == ["img1.png", "img2.png"]
    assert images(ood=True) == ["img3.png", "img4.png", "img5.png"]
    assert images(ood=False, call="positive") == ["img1.png", "img2.png"]
    assert wl.cases(sort="positive_calls")["image"].tolist()[0] == "img5.png"
    assert wl.cases(sort="ood_score", ascending=True)["image"].tolist()[0] == "img0.png"
    # a model imported without a readout: no calls, no flag, sorted last, never "in distribution"
    _predictions(tmp_path / "plain.csv", rule="mean")
    wl.import_predictions(tmp_path / "plain.csv", "cnn", "def")
    assert wl.cases(sort="positive_calls")["checkpoint_hash"].tolist()[-6:] == ["def"] * 6
    assert set(wl.cases(ood=False)["checkpoint_hash"]) == {"abc"}
    assert images(checkpoint_hash="def") == [f"img{i}.png" for i in range(6)]
    with pytest.raises(ValueError, match="call 'maybe'"):
        wl.cases(call="maybe")


def test_sources_are_one_queue_per_checkpoint(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv", rule="mean", readout=True)
    _predictions(tmp_path / "plain.csv", rule="mean")
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    wl.import_predictions(tmp_path / "plain.csv", "cnn", "def")
    wl.record_decision(int(wl.cases(checkpoint_hash="def")["id"].iloc[0]), "agree", "a")
    sources = wl.sources().set_index("checkpoint_hash")
    assert sources.loc["abc", ["model", "cases", "pending", "operating_point"]].tolist() == \
        ["fusion", 6, 6, "sensitivity"]
    assert sources.loc["def", ["model", "cases", "pending"]].tolist() == ["cnn", 6, 5]
    assert pd.isna(sources.loc["def", "operating_point"])


def test_cli_import_says_where_the_calls_were_made(tmp_path, capsys, wl_target):
    _predictions(tmp_path / "p.csv", rule="mean", readout=True)
    _predictions(tmp_path / "plain.csv", rule="mean")
    (tmp_path / "best.pt").write_bytes(b"weights")
    db = wl_target
    for csv in ("p.csv", "plain.csv"):
        assert main(["worklist", "import", str(tmp_path / csv), "--model", "fusion",
                     "--checkpoint-hash", csv, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "calls at the sensitivity operating point, 3 out of distribution" in out
    assert "no readout columns (cal_, call_, ood): no calls or OOD flags" in out


def test_filters(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv")
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    assert list(wl.cases(finding="Effusion")["image"]) == ["img0.png"]
    assert len(wl.cases(finding="Effusion", min_prob=0.0)) == 6
    mid = wl.cases(min_uncertainty=0.05, max_uncertainty=0.09)
    assert list(mid["image"]) == ["img3.png", "img2.png"]
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", reviewer="a")
    assert list(wl.cases(status="agree")["id"]) == [case]
    assert case not in set(wl.cases(status="pending")["id"])
    assert len(wl.cases(status="pending")) == 5
    assert list(wl.cases(sort="uncertainty", ascending=True)["image"])[0] == "img0.png"
    with pytest.raises(ValueError, match="status 'done'"):
        wl.cases(status="done")
    with pytest.raises(ValueError, match="unknown finding"):
        wl.cases(finding="Flu")


def test_decisions_keep_history_and_survive_reopen(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv")
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "second_read", reviewer="dr a", note="unsure")
    wl.record_decision(case, "disagree", reviewer="dr b", corrected=["Infiltrate", "Mass"])
    del wl
    wl = Worklist(wl_target)  # a fresh process would see the same
    history = wl.history(case)
    assert list(history["decision"]) == ["second_read", "disagree"]
    assert list(history["reviewer"]) == ["dr a", "dr b"]
    assert history["corrected"].iloc[1] == '["Infiltration", "Mass"]'  # canonical, NIH order
    row = wl.cases().set_index("id").loc[case]
    assert row["status"] == "disagree" and row["n_decisions"] == 2 and row["reviewer"] == "dr b"
    with pytest.raises(ValueError, match="no case with id 999"):
        wl.record_decision(999, "agree", reviewer="a")
    with pytest.raises(ValueError, match="decision 'maybe'"):
        wl.record_decision(case, "maybe", reviewer="a")
    with pytest.raises(ValueError, match="reviewer"):
        wl.record_decision(case, "agree", reviewer=" ")
    assert len(wl.history(case)) == 2  # failed writes left nothing behind


def test_evaluate_csv_without_std_or_source(tmp_path, wl_target):
    """`cxr evaluate` CSVs have no `source`: films are found under --images-root; external
    models' CSVs may lack std: no uncertainty, sorted last."""
    (tmp_path / "films" / "a").mkdir(parents=True)
    (tmp_path / "films" / "a" / "img1.png").write_bytes(b"x")
    _predictions(tmp_path / "p.csv", n=3, with_std=False, with_source=False)
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "external", "h", images_root=tmp_path / "films")
    table = wl.cases(sort="image", ascending=True)
    assert pd.isna(table["path"].iloc[0])  # img0 is not under the root
    assert table["path"].iloc[1] == str(tmp_path / "films" / "a" / "img1.png")
    assert table["uncertainty"].isna().all()


def test_bad_csv_names_row_and_column_and_imports_nothing(tmp_path, wl_target):
    df = _predictions(tmp_path / "p.csv")
    df.loc[3, "prob_Mass"] = 1.7
    df.to_csv(tmp_path / "bad.csv", index=False)
    wl = Worklist(wl_target)
    with pytest.raises(ValueError, match=r"bad.csv line 5 \(img3.png\): prob_Mass 1.7"):
        wl.import_predictions(tmp_path / "bad.csv", "fusion", "abc")
    df.drop(columns=["prob_Hernia"]).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(ValueError, match="prob_Hernia"):
        wl.import_predictions(tmp_path / "cols.csv", "fusion", "abc")
    assert wl.cases().empty


def test_cli_import_and_export(tmp_path, capsys, wl_target):
    _predictions(tmp_path / "p.csv")
    (tmp_path / "best.pt").write_bytes(b"weights")
    db = wl_target
    assert main(["worklist", "import", str(tmp_path / "p.csv"), "--model", "fusion",
                 "--checkpoint", str(tmp_path / "best.pt"), "--db", str(db)]) == 0
    assert "6 cases added" in capsys.readouterr().out
    wl = Worklist(db)
    assert set(wl.cases()["checkpoint_hash"]) == {file_sha256(tmp_path / "best.pt")}
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", reviewer="a")
    wl.record_decision(case, "disagree", reviewer="b", corrected=[])
    assert main(["worklist", "export", "--db", str(db), "--out", str(tmp_path / "o.csv")]) == 0
    out = pd.read_csv(tmp_path / "o.csv").set_index("id")
    assert len(out) == 6 and out.loc[case, "status"] == "disagree"
    assert out.loc[case, "corrected"] == "[]"
    assert main(["worklist", "export", "--db", str(db), "--out", str(tmp_path / "h.csv"),
                 "--history"]) == 0
    assert list(pd.read_csv(tmp_path / "h.csv")["decision"]) == ["agree", "disagree"]
    assert main(["worklist", "import", str(tmp_path / "p.csv"), "--model", "m",
                 "--checkpoint", str(tmp_path / "missing.pt"), "--db", str(db)]) == 1
    assert "missing.pt does not exist" in capsys.readouterr().err


def test_export_table_is_the_exported_csv_without_a_file(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv")
    wl = Worklist(wl_target)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "second_read", reviewer="a", note="look again")
    cases, decisions = wl.export_table(), wl.export_table(history=True)
    assert cases["image"].tolist() == sorted(cases["image"]) and len(cases) == 6
    assert decisions[["case_id", "decision", "note"]].values.tolist() == \
        [[case, "second_read", "look again"]]
    for history, table in ((False, cases), (True, decisions)):
        written = pd.read_csv(wl.export_csv(tmp_path / f"{history}.csv", history=history))
        assert written.columns.tolist() == table.columns.tolist() and len(written) == len(table)


def _reviewer(db, case_ids, name, n, start):
    start.wait()  # both writers go at once
    wl = Worklist(db)
    for i in range(n):
        wl.record_decision(case_ids[i % len(case_ids)], ("agree", "disagree")[i % 2],
                           reviewer=name, note=f"{name}-{i}")


def test_two_processes_lose_no_decisions(tmp_path, wl_target):
    _predictions(tmp_path / "p.csv")
    db = wl_target
    wl = Worklist(db)
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    ids = [int(i) for i in wl.cases()["id"]]
    ctx = multiprocessing.get_context("fork")  # the test module is not importable by name
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_reviewer, args=(db, ids, name, 200, start))
             for name in ("r1", "r2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    notes = pd.concat([wl.history(i) for i in ids])["note"]
    assert len(notes) == 400
    assert set(notes) == {f"r{k}-{i}" for k in (1, 2) for i in range(200)}


def test_counts_read_without_creating_or_writing(tmp_path, wl_target):
    with pytest.raises(FileNotFoundError, match="none.sqlite does not exist"):
        Worklist(tmp_path / "sub" / "none.sqlite", create=False)
    assert not (tmp_path / "sub").exists()
    _predictions(tmp_path / "p.csv")
    if "://" in wl_target:  # an empty database is no worklist yet either
        with pytest.raises(FileNotFoundError, match="has no worklist tables yet"):
            Worklist(wl_target, create=False)
    Worklist(wl_target).import_predictions(tmp_path / "p.csv", "fusion", "abc")
    wl = Worklist(wl_target, create=False)
    assert wl.counts() == {"cases": 6, "pending": 6, "decided": 0}
    case = int(wl.cases()["id"].iloc[0])
    wl.record_decision(case, "agree", reviewer="a")
    wl.record_decision(case, "disagree", reviewer="b")  # two decisions, one decided case
    assert wl.counts() == {"cases": 6, "pending": 5, "decided": 1}
