"""Copy a worklist to another database (a local SQLite file to the team's PostgreSQL):

    cxr worklist copy --from data/worklist.sqlite --to postgresql+psycopg://cxr@db/worklist

Cases, the full decision history (in order) and work items are copied in one transaction on the
target; live claims are not (they expire in minutes). A non-empty target is refused unless
`append`: then cases the target already has (same film key and checkpoint) are kept and only
decisions it lacks are added, so copying twice adds nothing. Afterwards the copy is checked:
the counts, and a sha256 over every copied case's and decision's content (ids aside), read back
from the target, must equal the source's; a mismatch is an error naming both.
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa

from cxr.worklist.schema import cases, decisions, work_items

CASE_KEY = ("image", "checkpoint_hash")
DECISION_FIELDS = ("decision", "corrected", "note", "reviewer", "created_at", "simulated")


def _canon(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return str(value)


def _snapshot(con) -> tuple[dict, dict]:
    """({case key: content}, {decision identity: None}) in id order, ids left out."""
    content = [c.name for c in cases.columns if c.name != "id"]
    rows, keys_by_id = {}, {}
    for row in con.execute(sa.select(cases).order_by(cases.c.id)).mappings():
        key = (row["image"], row["checkpoint_hash"])
        rows[key], keys_by_id[row["id"]] = tuple(_canon(row[c]) for c in content), key
    history = {}
    for row in con.execute(sa.select(decisions).order_by(decisions.c.id)).mappings():
        history[(keys_by_id[row["case_id"]], *(_canon(row[f]) for f in DECISION_FIELDS))] = None
    return rows, history


def digest(case_rows: dict, history) -> str:
    h = hashlib.sha256()
    for key in sorted(case_rows):
        h.update(repr((key, case_rows[key])).encode())
    for ident in sorted(history):
        h.update(repr(ident).encode())
    return h.hexdigest()


def copy_worklist(source, target, append: bool = False) -> dict:
    """Copy `source` (a Worklist) into `target` (a Worklist at the same schema); returns
    {"cases", "decisions", "work_items", "skipped_cases", "skipped_decisions", "sha256"}."""
    from cxr.worklist.store import insert_ignore

    with source._read() as con:
        src_cases, src_history = _snapshot(con)
        case_rows = [dict(r) for r in con.execute(sa.select(cases).order_by(cases.c.id))
                     .mappings()]
        decision_rows = [dict(r) for r in con.execute(sa.select(decisions)
                                                      .order_by(decisions.c.id)).mappings()]
        work_rows = [dict(r) for r in con.execute(sa.select(work_items)).mappings()]
    src_key = {r["id"]: (r["image"], r["checkpoint_hash"]) for r in case_rows}
    backend = target.url.get_backend_name()
    with target._write() as con:
        n_target = con.execute(sa.select(sa.func.count()).select_from(cases)).scalar_one()
        if n_target and not append:
            raise ValueError(f"{target.url_masked} already has {n_target} cases: nothing was "
                             "copied (add --append to add to them)")
        _, have_history = _snapshot(con) if n_target else ({}, {})
        new_cases = [{k: v for k, v in r.items() if k != "id"} for r in case_rows]
        for start in range(0, len(new_cases), 2000):  # cases the target has are kept
            con.execute(insert_ignore(cases, backend), new_cases[start:start + 2000])
        inserted = con.execute(sa.select(sa.func.count()).select_from(cases)).scalar_one() \
            - n_target
        ids = {(r.image, r.checkpoint_hash): r.id for r in con.execute(
            sa.select(cases.c.id, cases.c.image, cases.c.checkpoint_hash))}
        todo = []
        for r in decision_rows:
            key = src_key[r["case_id"]]
            if (key, *(_canon(r[f]) for f in DECISION_FIELDS)) in have_history:
                continue
            todo.append({**{f: r[f] for f in DECISION_FIELDS}, "case_id": ids[key]})
        for start in range(0, len(todo), 2000):  # one statement per chunk, ids in source order
            con.execute(decisions.insert(), todo[start:start + 2000])
        work = len(con.execute(insert_ignore(work_items, backend).returning(work_items.c.key),
                               work_rows).all()) if work_rows else 0
    with target._read() as con:
        got_cases, got_history = _snapshot(con)
    copied = {k: got_cases.get(k) for k in src_cases}
    copied_history = {i: None for i in got_history if i in src_history}
    want, got = digest(src_cases, src_history), digest(copied, copied_history)
    if want != got or len(copied_history) != len(src_history):
        raise ValueError(f"the copy in {target.url_masked} does not match {source.url_masked} "
                         f"(sha256 {got[:12]} != {want[:12]}, {len(copied_history)} of "
                         f"{len(src_history)} decisions): check the target before using it")
    return {"cases": inserted, "decisions": len(todo), "work_items": work,
            "skipped_cases": len(case_rows) - inserted,
            "skipped_decisions": len(decision_rows) - len(todo), "sha256": want}
