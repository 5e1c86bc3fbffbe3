"""The review worklist: predictions in, reviewers' decisions out (SQLAlchemy Core, any backend).

    >>> wl = Worklist("data/worklist.sqlite")                    # or a URL:
    >>> wl = Worklist("postgresql+psycopg://cxr:***@db.example.org/worklist")
    >>> table = wl.cases(status="pending", min_uncertainty=0.1)     # most uncertain first
    >>> wl.cases(checkpoint_hash=h, call="positive", ood=True)      # one model's queue
    >>> wl.record_decision(int(table.id[0]), "disagree", reviewer="dr a",
    ...                    corrected=["Effusion"], note="blunted angle",
    ...                    expected_decisions=int(table.n_decisions[0]))

One row per case: one film as read by one checkpoint, keyed by its path below the input root
(or its SOP Instance UID), so one checkpoint's cases (`sources()`, a reviewer's queue) never hold
a film twice. The readout's columns are NULL for predictions made without one. Decisions are
appended, never updated: a case's status is its latest decision (highest id), or 'pending'.
Writes lock the case first (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE locks the file),
so a case's history is in commit order and a stale view (expected_decisions) is refused inside
the same transaction. One Worklist may be shared by threads (Streamlit); many processes may
write at once. Opening with create=False never writes.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cxr.atomic import atomic_open
from cxr.csvsafe import csv_safe
from cxr.labels import FINDINGS, finding_index
from cxr.worklist import migrate
from cxr.worklist.claims import ClaimsMixin
from cxr.worklist.db import (CaseChanged, connection, is_sqlite, local_now, make_engine, mask,
                             server_clock, shared_engine, sqlite_path, to_url)
from cxr.worklist.schema import (CAL, CALL, DECISIONS, DICOM_REFS, PROB, STATUSES, STD, cases,
                                 claims, decisions)
from cxr.worklist.work import WorkMixin

if TYPE_CHECKING:
    from cxr.evaluation.predictions import Predictions

# The dashboard reads the same variable (cxr/dashboard/state.py), so both find one database.
_ENV = os.environ.get("CXR_WORKLIST", "data/worklist.sqlite")
DEFAULT_DB: str | Path = _ENV if "://" in _ENV else Path(_ENV)
SORTABLE = ("uncertainty", "mean_std", "max_std", "created_at", "image", "positive_calls",
            "ood_score", *PROB, *CAL)
IMPORTED = ["image", "path", "model", "checkpoint_hash", *PROB, *STD, "uncertainty",
            "uncertainty_rule", "mean_std", "max_std", "uncertain", *CAL, *CALL,
            "operating_point", "ood_score", "ood", "source_csv", "created_at", *DICOM_REFS]


_IMPORT_LOCK = 0x6378_7269  # pg_advisory_xact_lock key of imports


def insert_ignore(table: sa.Table, dialect: str):
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


class Worklist(ClaimsMixin, WorkMixin):
    """A worklist database: a path (SQLite, created with its folder on first use) or a URL.
    create=False: it must exist and is opened read-only until a method writes (SQLite: every
    read is `mode=ro`); a schema other than the code's is a SchemaMismatch at the first call
    that needs it (counts() reads any). create=True: an empty database is created at head, any
    schema but head is a SchemaMismatch at once. `clock`: the time source (claims, leases,
    stamps; claims and leases by default expire by the server's clock on a server)."""

    def __init__(self, target: str | os.PathLike = DEFAULT_DB, create: bool = True,
                 clock: Callable[[], datetime] | None = None):
        self.url = to_url(target)
        self.url_masked = mask(self.url)
        self.sqlite = is_sqlite(self.url)
        self.path = sqlite_path(self.url) if self.sqlite else None
        self.create = create
        self._checked = False  # the schema was found at head (checked once per Worklist)
        if self.sqlite and not create and not self.path.is_file():
            raise FileNotFoundError(f"worklist {self.path} does not exist")
        if self.sqlite and create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.sqlite:
            self.engine = make_engine(self.url, readonly=not create)
            self._writer = None if create else make_engine(self.url)
        else:  # a server has no read-only files: one shared pool reads and writes
            self.engine, self._writer = shared_engine(self.url), None
        # stamps (decisions, imports) by this machine's clock, so one process's are in order;
        # claims and leases expire by one clock for every machine: the server's on a server
        self.clock = clock or local_now
        self.lease_clock = clock or (local_now if self.sqlite
                                     else server_clock(self.engine, self.url))
        if create:
            self._open_for_write()
        else:
            self._open_readonly()

    def _open_for_write(self) -> None:
        if self.sqlite:
            raw = self.engine.raw_connection()  # outside any transaction, as WAL needs
            try:
                raw.driver_connection.execute("PRAGMA journal_mode=WAL")  # persistent
            finally:
                raw.close()
        with connection(self.engine, self.url) as con:
            state, _ = migrate.current(con)
            if state != "empty":
                migrate.check(con, self.url)
                self._checked = True
                return
        migrate.upgrade(self.engine, self.url)  # a new database, created at head
        self._checked = True

    def _open_readonly(self) -> None:
        """Reach the database without writing; the schema is checked by the first call that
        needs it (counts() works on any version, so the Home page can count an old one)."""
        try:
            with self._read(check=False) as con:
                state, _ = migrate.current(con)
        except OSError as exc:
            if not (self.sqlite and ("unable to open" in str(exc)
                                     or "readonly database" in str(exc))):
                raise
            # a WAL file in a folder we cannot write, with no -shm beside it: nobody has it open
            # for writing (a writer would have made the -shm), so read it as immutable
            self.engine = make_engine(self.url, readonly="immutable")
            with self._read(check=False) as con:
                state, _ = migrate.current(con)
        if state == "empty":
            with self._read(check=False) as con:
                migrate.check(con, self.url)  # FileNotFoundError: no worklist there yet

    def close(self) -> None:
        """Close an SQLite file's pooled connections (the last one out checkpoints the WAL and
        removes its files); a server's pool is shared by the process and stays."""
        if self.sqlite:
            for engine in (self.engine, self._writer):
                if engine is not None:
                    engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def _read(self, check: bool = True):
        with connection(self.engine, self.url) as con:
            if check and not self._checked:
                migrate.check(con, self.url)
                self._checked = True
            yield con

    @contextmanager
    def _write(self):
        with connection(self._writer or self.engine, self.url, write=True) as con:
            if not self._checked:
                migrate.check(con, self.url)
                self._checked = True
            yield con

    def _now(self, plus_seconds: float = 0.0, lease: bool = False) -> str:
        """The time as stored (ISO UTC); lease=True: by the clock claims and leases use (call it
        outside a transaction: on a server it may read the server's clock)."""
        now = (self.lease_clock if lease else self.clock)() + timedelta(seconds=plus_seconds)
        return now.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def _frame(self, stmt, con=None) -> pd.DataFrame:
        if con is not None:
            return pd.read_sql_query(stmt, con)
        with self._read() as own:
            return pd.read_sql_query(stmt, own)

    def _lock_case(self, con, case_id: int) -> None:
        """Lock the case row (PostgreSQL) so writes to one case are serialised; ValueError if
        there is no such case."""
        found = con.execute(sa.select(cases.c.id).where(cases.c.id == int(case_id))
                            .with_for_update()).first()
        if found is None:
            raise ValueError(f"no case with id {case_id} in {self.url_masked}")

    # -- import -------------------------------------------------------------------------
    def import_predictions(self, csv_path: str | Path, model: str, checkpoint_hash: str,
                           images_root: str | Path | None = None,
                           preds: Predictions | None = None,
                           dicom_refs: dict[str, dict] | None = None) -> dict[str, int]:
        """Add the cases of a `cxr predict` or `cxr evaluate` predictions.csv, all or nothing
        (one transaction). Cases already present for this checkpoint are skipped
        (re-importing is harmless). Film paths come from the `source` column, else from
        `images_root` (by the key's path below it, else by file name). `preds`: the file as
        `read_predictions` already read it. `dicom_refs`: image key -> {study_uid,
        series_uid, sop_uid, study_date} (the PACS pull)."""
        from cxr.evaluation.predictions import read_predictions

        csv_path = Path(csv_path)
        preds = preds if preds is not None else read_predictions(csv_path)
        rows = _case_rows(preds, images_root, dicom_refs or {})
        fixed = {"model": model, "checkpoint_hash": checkpoint_hash,
                 "source_csv": str(csv_path.resolve()), "created_at": self._now()}
        rows = [{**r, **fixed} for r in rows]
        backend = self.url.get_backend_name()
        with self._write() as con:
            if backend == "sqlite":  # the file is locked: RETURNING counts what was new
                stmt, inserted = insert_ignore(cases, backend).returning(cases.c.id), 0
                for start in range(0, len(rows), 2000):
                    inserted += len(con.execute(stmt, rows[start:start + 2000]).all())
            else:  # one import at a time, so the count before and after is this import's;
                # a plain executemany (pipelined): RETURNING's multi-row VALUES is 10x slower
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _IMPORT_LOCK})
                count = (sa.select(sa.func.count()).select_from(cases)
                         .where(cases.c.checkpoint_hash == checkpoint_hash))
                before = con.execute(count).scalar_one()
                if rows:
                    con.execute(insert_ignore(cases, backend), rows)
                inserted = con.execute(count).scalar_one() - before
        return {"inserted": inserted, "skipped": len(rows) - inserted}

    # -- read ---------------------------------------------------------------------------
    def _view(self) -> sa.Subquery:
        """Every case with its latest decision, number of decisions, number of positive calls
        (NULL: imported without a readout) and live claim."""
        last = (sa.select(decisions.c.case_id, sa.func.max(decisions.c.id).label("last_id"),
                          sa.func.count().label("n"))
                .group_by(decisions.c.case_id).subquery("last"))
        d, cl = decisions.alias("d"), claims.alias("cl")
        positive = sa.case((cases.c.operating_point.is_(None), sa.null()),
                           else_=sum(sa.case((cases.c[c] == "positive", 1), else_=0)
                                     for c in CALL))
        return (sa.select(*cases.c, positive.label("positive_calls"),
                          sa.func.coalesce(d.c.decision, "pending").label("status"),
                          d.c.reviewer.label("reviewer"), d.c.note.label("note"),
                          d.c.corrected.label("corrected"), d.c.created_at.label("decided_at"),
                          d.c.simulated.label("simulated"),
                          sa.func.coalesce(last.c.n, 0).label("n_decisions"),
                          cl.c.holder.label("claimed_by"),
                          cl.c.expires_at.label("claim_expires"))
                .select_from(cases.outerjoin(last, last.c.case_id == cases.c.id)
                             .outerjoin(d, d.c.id == last.c.last_id)
                             .outerjoin(cl, sa.and_(cl.c.case_id == cases.c.id,
                                                    cl.c.expires_at > self._now(lease=True))))
                .subquery("v"))

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
        Cases without the sorted value (no std, no readout) sort last either way.
        Columns: the case's, positive_calls, status, reviewer, note, corrected, decided_at,
        simulated (of the latest decision), n_decisions, claimed_by and claim_expires (NULL:
        no live claim), and the DICOM references."""
        from cxr.readout import CALLS

        v = self._view()
        where = []
        if finding is not None:
            where.append(v.c[f"prob_{FINDINGS[finding_index(finding)]}"] >= float(min_prob))
        if checkpoint_hash is not None:
            where.append(v.c.checkpoint_hash == str(checkpoint_hash))
        if call is not None:
            if call not in CALLS:
                raise ValueError(f"call {call!r} is not one of {CALLS}")
            columns = (CALL if call_finding is None
                       else [f"call_{FINDINGS[finding_index(call_finding)]}"])
            where.append(sa.or_(*(v.c[c] == call for c in columns)))
        if ood is not None:
            where.append(v.c.ood == int(bool(ood)))
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status {status!r} is not one of {STATUSES}")
            where.append(v.c.status == status)
        if min_uncertainty is not None:
            where.append(v.c.uncertainty >= float(min_uncertainty))
        if max_uncertainty is not None:
            where.append(v.c.uncertainty <= float(max_uncertainty))
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}")
        key = v.c[sort].asc() if ascending else v.c[sort].desc()
        return self._frame(sa.select(v).where(*where).order_by(key.nulls_last(), v.c.id))

    def sources(self) -> pd.DataFrame:
        """One row per checkpoint whose predictions are in the worklist (a reviewer's queue):
        model, checkpoint_hash, cases, pending, operating_point(s) of its calls (NULL: none;
        several: comma-separated), first import; oldest first."""
        decided = sa.select(decisions.c.case_id).distinct().subquery("decided")
        counts = (sa.select(cases.c.model, cases.c.checkpoint_hash,
                            sa.func.count().label("cases"),
                            sa.func.sum(sa.case((decided.c.case_id.is_(None), 1), else_=0))
                            .label("pending"),
                            sa.func.min(cases.c.created_at).label("imported"))
                  .select_from(cases.outerjoin(decided, decided.c.case_id == cases.c.id))
                  .group_by(cases.c.model, cases.c.checkpoint_hash))
        points = (sa.select(cases.c.model, cases.c.checkpoint_hash, cases.c.operating_point)
                  .where(cases.c.operating_point.is_not(None)).distinct())
        with self._read() as con:
            table, points = self._frame(counts, con), self._frame(points, con)
        joined = (points.groupby(["model", "checkpoint_hash"])["operating_point"]
                  .agg(lambda s: ",".join(sorted(s))))
        keys = pd.MultiIndex.from_frame(table[["model", "checkpoint_hash"]])
        table.insert(4, "operating_point", joined.reindex(keys).to_numpy(dtype=object))
        table["pending"] = table["pending"].astype(int)
        return table.sort_values(["imported", "model"], kind="stable").reset_index(drop=True)

    def counts(self) -> dict[str, int]:
        """{"cases", "pending", "decided"}: how many cases, and how many have no decision yet or
        at least one. Read-only: safe on a database this process may not write."""
        with self._read(check=False) as con:  # any schema version has these two tables
            n = con.execute(sa.select(sa.func.count()).select_from(cases)).scalar_one()
            decided = con.execute(sa.select(sa.func.count(sa.distinct(decisions.c.case_id))))\
                .scalar_one()
        return {"cases": int(n), "pending": int(n - decided), "decided": int(decided)}

    def history(self, case_id: int) -> pd.DataFrame:
        """Every decision on a case, oldest first (simulated: by the demo's reviewer)."""
        return self._frame(sa.select(decisions).where(decisions.c.case_id == int(case_id))
                           .order_by(decisions.c.id))

    # -- write --------------------------------------------------------------------------
    def record_decision(self, case_id: int, decision: str, reviewer: str, note: str = "",
                        corrected: list[str] | None = None, *,
                        expected_decisions: int | None = None, simulated: bool = False) -> int:
        """Append a review decision (agree / disagree / second_read); returns its id.
        `corrected`: the findings the reviewer says are present ([] = No Finding).
        `expected_decisions`: the case's number of decisions when the reviewer looked at it;
        checked in the same transaction, CaseChanged (nothing recorded) if it differs.
        `simulated`: made by the demo's simulated reviewer."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
        if not str(reviewer).strip():
            raise ValueError("a decision needs the reviewer's name")
        fixed = None if corrected is None else json.dumps(
            sorted({FINDINGS[finding_index(f)] for f in corrected}, key=finding_index))
        with self._write() as con:
            self._lock_case(con, case_id)
            if expected_decisions is not None:
                self._check_unchanged(con, int(case_id), int(expected_decisions))
            return int(con.execute(decisions.insert().values(
                case_id=int(case_id), decision=decision, corrected=fixed, note=str(note),
                reviewer=str(reviewer).strip(), created_at=self._now(),
                simulated=bool(simulated))).inserted_primary_key[0])

    def _check_unchanged(self, con, case_id: int, expected: int) -> None:
        rows = con.execute(sa.select(decisions.c.reviewer, decisions.c.created_at)
                           .where(decisions.c.case_id == case_id)
                           .order_by(decisions.c.id.desc())).all()
        if len(rows) == expected:
            return
        if rows and len(rows) > expected:
            who, when = rows[0]
            at = datetime.fromisoformat(when).astimezone(timezone.utc).strftime("%H:%M UTC")
            raise CaseChanged(f"case {case_id} was decided by {who} at {at} while you were "
                              "looking at it; nothing was recorded")
        raise CaseChanged(f"case {case_id} has {len(rows)} decision(s), not the {expected} you "
                          "saw; nothing was recorded")

    def mark_results_sent(self, case_id: int, sr_uid: str) -> None:
        """The model's results for the case were stored in the PACS as SR `sr_uid`."""
        with self._write() as con:
            self._lock_case(con, case_id)
            con.execute(cases.update().where(cases.c.id == int(case_id))
                        .values(results_sent_at=self._now(), result_sr_uid=str(sr_uid)))

    def mark_decision_sent(self, case_id: int) -> None:
        """The case's latest decision was stored in the PACS (as an SR) now."""
        with self._write() as con:
            self._lock_case(con, case_id)
            con.execute(cases.update().where(cases.c.id == int(case_id))
                        .values(decision_sent_at=self._now()))

    # -- export -------------------------------------------------------------------------
    def export_table(self, history: bool = False) -> pd.DataFrame:
        """Cases with their current status (or, history=True, every decision with its case),
        text cells made safe for spreadsheets (cxr.csvsafe)."""
        if not history:
            return csv_safe(self.cases(sort="image", ascending=True))
        d, c = decisions, cases
        stmt = (sa.select(d.c.id.label("decision_id"), c.c.id.label("case_id"), c.c.image,
                          c.c.path, c.c.model, c.c.checkpoint_hash, d.c.decision, d.c.corrected,
                          d.c.note, d.c.reviewer, d.c.created_at, d.c.simulated,
                          *(c.c[k] for k in DICOM_REFS))
                .select_from(d.join(c, c.c.id == d.c.case_id)).order_by(d.c.id))
        return csv_safe(self._frame(stmt))

    def export_csv(self, path: str | Path, history: bool = False) -> Path:
        """export_table() as a CSV file (`cxr worklist export`), written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = self.export_table(history)
        with atomic_open(path, "w", newline="") as f:
            table.to_csv(f, index=False)
        return path


def _case_rows(preds: Predictions, images_root, dicom_refs: dict[str, dict]) -> list[dict]:
    """The cases of a predictions CSV, as `read_predictions` validated it (errors name the
    file, line and column), as column -> value dicts."""
    paths = list(preds.source) if preds.source is not None else _film_paths(preds.images,
                                                                              images_root)
    unknown = set(dicom_refs) - {str(i) for i in preds.images}
    if unknown:
        raise ValueError(f"dicom_refs for {len(unknown)} image(s) not in the predictions, e.g. "
                         f"{sorted(unknown)[0]!r}")
    rows, r, has_std = [], preds.readout, preds.std is not None
    for i, image in enumerate(preds.images):
        std = preds.std[i].tolist() if has_std else [None] * len(STD)
        refs = dicom_refs.get(str(image), {})
        extra = set(refs) - set(DICOM_REFS)
        if extra:
            raise ValueError(f"dicom_refs[{image!r}] has unknown keys {sorted(extra)}; "
                             f"allowed: {DICOM_REFS}")
        row = {"image": str(image), "path": paths[i],
               **dict(zip(PROB, preds.prob[i].tolist())), **dict(zip(STD, std)),
               "uncertain": int(preds.uncertain[i]),
               "uncertainty": float(preds.score[i]) if has_std else None,
               "uncertainty_rule": preds.rule if has_std else None,
               "mean_std": sum(std) / len(std) if has_std else None,
               "max_std": max(std) if has_std else None,
               **dict(zip(CAL, r.calibrated[i].tolist() if r else [None] * len(CAL))),
               **dict(zip(CALL, [str(c) for c in r.calls[i]] if r else [None] * len(CALL))),
               "operating_point": r.operating_point if r else None,
               "ood_score": float(r.ood_score[i]) if r else None,
               "ood": int(r.ood[i]) if r else None,
               **{k: (None if refs.get(k) is None else str(refs[k])) for k in DICOM_REFS}}
        rows.append(row)
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
    """Each key's film below images_root: at the key's own relative path, else found by its file
    name (an NIH release spreads films over images_0XX/ folders)."""
    if images_root is None:
        return [None] * len(images)
    from cxr.data.metadata import index_images
    root, index = Path(images_root), None
    found = []
    for name in images:
        if (root / str(name)).is_file() and "/" in str(name):
            found.append(str(root / str(name)))
            continue
        index = index_images(images_root) if index is None else index
        found.append(index.get(Path(str(name)).name))
    return found
