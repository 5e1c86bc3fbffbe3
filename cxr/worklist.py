"""The review worklist: predictions in, reviewers' decisions out, in one SQLite file (WAL).

    cxr predict --checkpoint checkpoints/fusion/best.pt data/incoming --out out/pred
    cxr worklist import out/pred/predictions.csv --model fusion \
        --checkpoint checkpoints/fusion/best.pt --db data/worklist.sqlite
    cxr worklist import checkpoints/fusion/eval/predictions.csv --model fusion \
        --checkpoint checkpoints/fusion/best.pt --images-root data/demo/images
    cxr worklist export --db data/worklist.sqlite --out decisions.csv [--history]

    >>> wl = Worklist("data/worklist.sqlite")
    >>> table = wl.cases(status="pending", min_uncertainty=0.1)     # most uncertain first
    >>> wl.cases(checkpoint_hash=h, call="positive", ood=True)      # one model's queue
    >>> wl.record_decision(int(table.id[0]), "disagree", reviewer="dr a",
    ...                    corrected=["Effusion"], note="blunted angle")

One row per case: one film as read by one checkpoint, so one checkpoint's cases (`sources()`,
the Triage page's queue) never hold a film twice. Per-finding columns (_SCHEMA) let filters run
in SQL; the readout's columns (calibrated probabilities, calls at the import's operating point,
OOD score and flag) are NULL for predictions made without one. An older database is migrated
when opened (_MIGRATIONS): its cases were flagged by the per-finding rule, so they get
`uncertainty_rule` 'any' (their `uncertainty` was the max std). Decisions are appended, never
updated: a case's status is its latest decision, or 'pending'. Every call opens its own short
connection, so one Worklist can be shared by threads (Streamlit) and many processes can write at
once: writes take the lock up front (BEGIN IMMEDIATE) and wait on it (busy_timeout) instead of
failing.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from cxr.evaluation.predictions import (CAL_COLUMNS, CALL_COLUMNS, PROB_COLUMNS, STD_COLUMNS,
                                        Predictions, read_predictions)
from cxr.hashing import file_sha256
from cxr.labels import FINDINGS, finding_index

# The dashboard reads the same variable (cxr/dashboard/state.py), so both find one database.
DEFAULT_DB = Path(os.environ.get("CXR_WORKLIST", "data/worklist.sqlite"))
DECISIONS = ("agree", "disagree", "second_read")
STATUSES = ("pending", *DECISIONS)
BUSY_TIMEOUT_MS = 60_000
PROB, STD = PROB_COLUMNS, STD_COLUMNS  # the cases table has one column per finding of each
CAL, CALL = CAL_COLUMNS, CALL_COLUMNS    # ... and, from a readout, of these
SORTABLE = ("uncertainty", "mean_std", "max_std", "created_at", "image", "positive_calls",
            "ood_score", *PROB, *CAL)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    image TEXT NOT NULL,            -- Image Index (file name)
    path TEXT,                      -- where the film is, when known
    model TEXT NOT NULL,
    checkpoint_hash TEXT NOT NULL,  -- sha256 of the checkpoint file
    {", ".join(f"{c} REAL NOT NULL" for c in PROB)},
    {", ".join(f"{c} REAL" for c in STD)},
    uncertainty REAL,               -- image score under uncertainty_rule (NULL: no std)
    uncertainty_rule TEXT,          -- 'mean' or 'any' (cxr.uncertainty; NULL: no std)
    mean_std REAL,
    max_std REAL,
    uncertain INTEGER NOT NULL,     -- 1: flagged uncertain under the rule
    {", ".join(f"{c} REAL" for c in CAL)},
    {", ".join(f"{c} TEXT" for c in CALL)},
    operating_point TEXT,           -- where the calls were made (NULL: no readout)
    ood_score REAL,                 -- out-of-distribution score (NULL: no readout)
    ood INTEGER,                    -- 1: out of distribution (NULL: no readout)
    source_csv TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (image, checkpoint_hash)
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    decision TEXT NOT NULL CHECK (decision IN {DECISIONS}),
    corrected TEXT,                 -- JSON list of the findings the reviewer says are present
    note TEXT NOT NULL DEFAULT '',
    reviewer TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_case ON decisions(case_id, id);
"""
# Columns added since the first schema: (name, type, how existing cases get their value; None:
# NULL, e.g. no readout was imported with them).
_MIGRATIONS = (
    ("uncertainty_rule", "TEXT", "UPDATE cases SET uncertainty_rule = 'any' "
                                 "WHERE uncertainty IS NOT NULL"),
    ("max_std", "REAL", f"UPDATE cases SET max_std = MAX({', '.join(STD)})"),
    *((c, "REAL", None) for c in CAL), *((c, "TEXT", None) for c in CALL),
    ("operating_point", "TEXT", None), ("ood_score", "REAL", None), ("ood", "INTEGER", None),
)
# A case with its latest decision (the highest id: ids only grow, timestamps may tie), and its
# number of positive calls (NULL: imported without a readout).
_CASES_VIEW = f"""
SELECT c.*, CASE WHEN c.operating_point IS NULL THEN NULL
                 ELSE {" + ".join(f"(c.{c} = 'positive')" for c in CALL)} END AS positive_calls,
       COALESCE(d.decision, 'pending') AS status, d.reviewer AS reviewer,
       d.note AS note, d.corrected AS corrected, d.created_at AS decided_at,
       (SELECT COUNT(*) FROM decisions WHERE case_id = c.id) AS n_decisions
FROM cases c LEFT JOIN decisions d
  ON d.id = (SELECT MAX(id) FROM decisions WHERE case_id = c.id)
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Worklist:
    """A worklist database file; created (with its folder) on first use, unless create=False
    (then it must exist, and nothing is written until a method writes)."""

    def __init__(self, path: str | Path = DEFAULT_DB, create: bool = True):
        self.path = Path(path)
        if not create:
            if not self.path.is_file():
                raise FileNotFoundError(f"worklist {self.path} does not exist")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            con.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns an older database lacks, under the write lock and checked again
        there, so two processes opening it at once do not both add them."""
        def missing(con) -> list[tuple[str, str, str]]:
            have = {row[1] for row in con.execute("PRAGMA table_info(cases)")}
            return [m for m in _MIGRATIONS if m[0] not in have]

        with self._connect() as con:
            if not missing(con):
                return
        with self._transaction() as con:
            for name, kind, fill in missing(con):
                con.execute(f"ALTER TABLE cases ADD COLUMN {name} {kind}")
                if fill:
                    con.execute(fill)

    @contextmanager
    def _connect(self, readonly: bool = False):
        # isolation_level=None: no implicit transactions; we say BEGIN IMMEDIATE ourselves.
        target = f"file:{self.path}?mode=ro" if readonly else self.path
        con = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                              uri=readonly)
        try:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self):
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- import -------------------------------------------------------------------------
    def import_predictions(self, csv_path: str | Path, model: str, checkpoint_hash: str,
                           images_root: str | Path | None = None,
                           preds: Predictions | None = None) -> dict[str, int]:
        """Add the cases of a `cxr predict` or `cxr evaluate` predictions.csv, all or nothing.
        Cases already present for this checkpoint are skipped (re-importing is harmless).
        Film paths come from the `source` column, else from `images_root` (by file name).
        `preds`: the file as `read_predictions` already read it (so a caller that also needs
        it, `cxr worklist import`, reads and validates the CSV once)."""
        csv_path = Path(csv_path)
        rows = _case_rows(preds if preds is not None else read_predictions(csv_path), images_root)
        created = _now()
        with self._transaction() as con:
            before = con.total_changes
            columns = ["image", "path", "model", "checkpoint_hash", *PROB, *STD, "uncertainty",
                       "uncertainty_rule", "mean_std", "max_std", "uncertain", *CAL, *CALL,
                       "operating_point", "ood_score", "ood", "source_csv", "created_at"]
            con.executemany(
                f"INSERT OR IGNORE INTO cases ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [(r["image"], r["path"], model, checkpoint_hash, *r["prob"], *r["std"],
                  r["uncertainty"], r["uncertainty_rule"], r["mean_std"], r["max_std"],
                  r["uncertain"], *r["cal"], *r["call"], r["operating_point"], r["ood_score"],
                  r["ood"], str(csv_path.resolve()), created) for r in rows])
            inserted = con.total_changes - before
        return {"inserted": inserted, "skipped": len(rows) - inserted}

    # -- read ---------------------------------------------------------------------------
    def cases(self, finding: str | None = None, min_prob: float = 0.5,
              status: str | None = None, min_uncertainty: float | None = None,
              max_uncertainty: float | None = None, sort: str = "uncertainty",
              ascending: bool = False, checkpoint_hash: str | None = None,
              call: str | None = None, call_finding: str | None = None,
              ood: bool | None = None) -> pd.DataFrame:
        """Cases with their status, most uncertain first by default (`uncertainty`: each case's
        image score under its rule; min/max_uncertainty filter on it too).

        finding: keep cases whose mean probability for it is >= min_prob.
        status: 'pending', 'agree', 'disagree' or 'second_read' (the latest decision).
        checkpoint_hash: only that checkpoint's cases (one model's queue).
        call: keep cases with this call (positive / negative / uncertain / n/a) for
        `call_finding`, or for any finding when it is None ("any positive call").
        ood: True keeps the out-of-distribution cases, False those inside (cases imported
        without a readout have no flag and are dropped by either).
        sort: one of SORTABLE (the scores, created_at, image, a prob_ or cal_ column).
        Cases without the sorted value (no std, no readout) sort last either way."""
        from cxr.readout import CALLS

        where, params = [], []
        if finding is not None:
            where.append(f"prob_{FINDINGS[finding_index(finding)]} >= ?")
            params.append(float(min_prob))
        if checkpoint_hash is not None:
            where.append("checkpoint_hash = ?")
            params.append(str(checkpoint_hash))
        if call is not None:
            if call not in CALLS:
                raise ValueError(f"call {call!r} is not one of {CALLS}")
            columns = (CALL if call_finding is None
                       else [f"call_{FINDINGS[finding_index(call_finding)]}"])
            where.append(f"? IN ({', '.join(columns)})")
            params.append(call)
        if ood is not None:
            where.append("ood = ?")
            params.append(int(bool(ood)))
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status {status!r} is not one of {STATUSES}")
            where.append("status = ?")
            params.append(status)
        if min_uncertainty is not None:
            where.append("uncertainty >= ?")
            params.append(float(min_uncertainty))
        if max_uncertainty is not None:
            where.append("uncertainty <= ?")
            params.append(float(max_uncertainty))
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}")
        order = f"{sort} IS NULL, {sort} {'ASC' if ascending else 'DESC'}, id"
        sql = (f"SELECT * FROM ({_CASES_VIEW}) "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY {order}")
        with self._connect() as con:
            return pd.read_sql_query(sql, con, params=params)

    def sources(self) -> pd.DataFrame:
        """One row per checkpoint whose predictions are in the worklist (a reviewer's queue):
        model, checkpoint_hash, cases, pending, operating_point(s) of its calls (NULL: none),
        first import; oldest first."""
        sql = (f"SELECT model, checkpoint_hash, COUNT(*) AS cases, "
               "SUM(status = 'pending') AS pending, "
               "GROUP_CONCAT(DISTINCT operating_point) AS operating_point, "
               f"MIN(created_at) AS imported FROM ({_CASES_VIEW}) "
               "GROUP BY model, checkpoint_hash ORDER BY imported, model")
        with self._connect() as con:
            return pd.read_sql_query(sql, con)

    def counts(self) -> dict[str, int]:
        """{"cases", "pending", "decided"}: how many cases, and how many have no decision yet or
        at least one. Read-only: safe on a database this process may not write."""
        with self._connect(readonly=True) as con:
            cases = con.execute("SELECT COUNT(*) FROM cases").fetchone()[0]
            decided = con.execute("SELECT COUNT(DISTINCT case_id) FROM decisions").fetchone()[0]
        return {"cases": cases, "pending": cases - decided, "decided": decided}

    def history(self, case_id: int) -> pd.DataFrame:
        """Every decision on a case, oldest first."""
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM decisions WHERE case_id = ? ORDER BY id",
                                     con, params=[int(case_id)])

    # -- write --------------------------------------------------------------------------
    def record_decision(self, case_id: int, decision: str, reviewer: str, note: str = "",
                        corrected: list[str] | None = None) -> int:
        """Append a review decision (agree / disagree / second_read); returns its id.
        `corrected`: the findings the reviewer says are present ([] = No Finding)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
        if not str(reviewer).strip():
            raise ValueError("a decision needs the reviewer's name")
        fixed = None if corrected is None else json.dumps(
            sorted({FINDINGS[finding_index(f)] for f in corrected}, key=finding_index))
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM cases WHERE id = ?", (int(case_id),)).fetchone() is None:
                raise ValueError(f"no case with id {case_id} in {self.path}")
            cur = con.execute(
                "INSERT INTO decisions (case_id, decision, corrected, note, reviewer, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (int(case_id), decision, fixed, str(note), str(reviewer).strip(), _now()))
            return int(cur.lastrowid)

    def export_table(self, history: bool = False) -> pd.DataFrame:
        """Cases with their current status (or, history=True, every decision with its case)."""
        if not history:
            return self.cases(sort="image", ascending=True)
        with self._connect() as con:
            return pd.read_sql_query(
                "SELECT d.id AS decision_id, c.id AS case_id, c.image, c.path, c.model, "
                "c.checkpoint_hash, d.decision, d.corrected, d.note, d.reviewer, "
                "d.created_at FROM decisions d JOIN cases c ON c.id = d.case_id "
                "ORDER BY d.id", con)

    def export_csv(self, path: str | Path, history: bool = False) -> Path:
        """export_table() as a CSV file (`cxr worklist export`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.export_table(history).to_csv(path, index=False)
        return path


def _case_rows(preds: Predictions, images_root) -> list[dict]:
    """The cases of a predictions CSV, as `read_predictions` validated it (errors name the
    file, line and column)."""
    paths = list(preds.source) if preds.source is not None else _film_paths(preds.images,
                                                                              images_root)
    rows, r, has_std = [], preds.readout, preds.std is not None
    for i, image in enumerate(preds.images):
        std = preds.std[i].tolist() if has_std else [None] * len(STD)
        rows.append({"image": image, "path": paths[i], "prob": preds.prob[i].tolist(),
                     "std": std, "uncertain": int(preds.uncertain[i]),
                     "uncertainty": float(preds.score[i]) if has_std else None,
                     "uncertainty_rule": preds.rule if has_std else None,
                     "mean_std": sum(std) / len(std) if has_std else None,
                     "max_std": max(std) if has_std else None,
                     "cal": r.calibrated[i].tolist() if r else [None] * len(CAL),
                     "call": [str(c) for c in r.calls[i]] if r else [None] * len(CALL),
                     "operating_point": r.operating_point if r else None,
                     "ood_score": float(r.ood_score[i]) if r else None,
                     "ood": int(r.ood[i]) if r else None})
    return rows


def readout_line(preds: Predictions) -> str:
    """What the import says about the file's readout: the operating point of its calls, or none."""
    r = preds.readout
    if r is None:
        return ("no readout columns (cal_, call_, ood): no calls or OOD flags for these cases "
                "(`cxr calibrate` the checkpoint, then predict or evaluate again)")
    return (f"calls at the {r.operating_point} operating point, {int(r.ood.sum())} out of "
            "distribution")


def _film_paths(images, images_root) -> list[str | None]:
    if images_root is None:
        return [None] * len(images)
    from cxr.data.metadata import index_images
    index = index_images(images_root)
    return [index.get(name) for name in images]


# -- `cxr worklist` -------------------------------------------------------------------------
def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="add a predictions.csv to the worklist")
    imp.add_argument("predictions", type=Path, help="predictions.csv of cxr predict/evaluate")
    imp.add_argument("--model", required=True, help="model name shown to reviewers")
    which = imp.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="the checkpoint that made the predictions")
    which.add_argument("--checkpoint-hash", help="its sha256, when the file is elsewhere")
    imp.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"default {DEFAULT_DB}")
    imp.add_argument("--images-root", type=Path,
                     help="where the films are, for CSVs without a `source` column")
    exp = sub.add_parser("export", help="write the cases and their decisions to CSV")
    exp.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"default {DEFAULT_DB}")
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--history", action="store_true", help="every decision, not just the latest")
    from cxr.worklist_cases import add_cases_command
    add_cases_command(sub)  # `cxr worklist cases --order ...` (cxr/worklist_cases.py)


def run(args) -> int:
    if getattr(args, "func", None) is not None:  # a subcommand that brings its own runner
        return args.func(args)
    if args.action == "import":
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
        if not args.predictions.is_file():
            raise FileNotFoundError(f"predictions file {args.predictions} does not exist")
        digest = args.checkpoint_hash or file_sha256(args.checkpoint)
        preds = read_predictions(args.predictions)
        counts = Worklist(args.db).import_predictions(args.predictions, args.model, digest,
                                                      images_root=args.images_root, preds=preds)
        print(f"{args.db}: {counts['inserted']} cases added, {counts['skipped']} already there; "
              f"{readout_line(preds)}")
        return 0
    if not args.db.is_file():
        raise FileNotFoundError(f"worklist {args.db} does not exist")
    out = Worklist(args.db).export_csv(args.out, history=args.history)
    print(f"wrote {out}")
    return 0
