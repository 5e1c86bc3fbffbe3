"""Schema versions by Alembic (cxr/worklist/migrations): where a database stands, upgrading it.

    cxr worklist upgrade --db data/worklist.sqlite
    cxr worklist upgrade --db postgresql+psycopg://cxr@db.example.org/worklist

A database is empty (no tables), legacy (a worklist made before migrations: tables, no
alembic_version), at a revision the code knows (older than head, or head) or at one it does not
(made by newer code). Writing code opens only a database at head; an empty one is created at
head; every other state is a SchemaMismatch whose message says what to run. `upgrade` brings a
legacy or older database to head in one transaction, keeping every case and decision.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from cxr.worklist.db import SchemaMismatch, connection, mask

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revisions in migrations/versions, oldest first (a test checks them against Alembic's own
# reading, so opening a worklist need not import Alembic).
REVISIONS = ("0001", "0002")
_LOCK_KEY = 0x6378_7277  # pg_advisory_xact_lock key: one upgrade at a time per database


def config(con=None):
    """Alembic's Config for the worklist's migrations, running on `con`."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = con
    return cfg


def revisions() -> tuple[str, tuple[str, ...]]:
    """(head, every revision the code knows)."""
    return REVISIONS[-1], REVISIONS


def current(con) -> tuple[str, str | None]:
    """(state, revision): state is 'empty', 'legacy', 'head', 'older' or 'newer'."""
    inspector = sa.inspect(con)
    if not inspector.has_table("alembic_version"):
        return ("legacy" if inspector.has_table("cases") else "empty"), None
    rev = con.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    head, known = revisions()
    if rev == head:
        return "head", rev
    return ("older" if rev in known else "newer"), rev


def check(con, url) -> None:
    """SchemaMismatch unless the database is at the code's head."""
    state, rev = current(con)
    if state == "head":
        return
    run = f"run `cxr worklist upgrade --db {mask(url)}`"
    if state == "empty":
        raise FileNotFoundError(f"worklist {mask(url)} has no worklist tables yet ({run}, or "
                                "import predictions into it)")
    if state == "newer":
        raise SchemaMismatch(f"worklist {mask(url)} has schema revision {rev}, newer than this "
                             f"code knows (head {revisions()[0]}): update the code (cxr) that "
                             "opens it; nothing was changed")
    what = ("was made before schema migrations" if state == "legacy"
            else f"has schema revision {rev}, older than this code's {revisions()[0]}")
    raise SchemaMismatch(f"worklist {mask(url)} {what}: {run} (back it up first); nothing was "
                         "changed")


def upgrade(engine, url, create: bool = True) -> tuple[str, str]:
    """Bring the database to head (create it at head when empty and `create`); returns
    (state before, head). A newer database is refused (SchemaMismatch)."""
    with connection(engine, url, write=True) as con:
        if url.get_backend_name() == "postgresql":
            con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        state, _ = current(con)
        if state == "newer":
            check(con, url)
        if state == "empty" and not create:
            check(con, url)
        if state != "head":
            from alembic import command

            command.upgrade(config(con), "head")
    return state, revisions()[0]
