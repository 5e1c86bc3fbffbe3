"""Opening a worklist database: a path (SQLite) or a URL, the engine, transactions, errors.

SQLite keeps its embedded behaviour: WAL (readers never block the writer), writes take the lock
up front (BEGIN IMMEDIATE) and wait for it (busy timeout) instead of failing. A read-only open
(create=False) uses `mode=ro` and never writes. PostgreSQL
(`postgresql+psycopg://user:password@host/db`) gets a pool that checks a connection before use,
a connect timeout, a few retries on connecting, and WorklistUnavailable (message with the URL's
password masked) when the server cannot be reached. No statement parameters appear in errors.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

BUSY_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 5
CONNECT_TRIES = 3  # connecting is retried (nothing was sent yet); a statement is not


class WorklistUnavailable(ConnectionError):
    """The worklist's database server cannot be reached (the message names the masked URL).
    A ConnectionError, so `cxr`'s commands print it as a one-line error like any OSError."""


class SchemaMismatch(ValueError):
    """The database's schema is older or newer than the code (the message says what to run)."""


class CaseChanged(ValueError):
    """A decision was refused because the case changed since the reviewer looked at it."""


def to_url(target: str | os.PathLike) -> URL:
    """A path -> sqlite:///path; a URL string -> that URL (ValueError naming it, masked, if it is
    not one SQLAlchemy knows)."""
    text = os.fspath(target)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text)))
    try:
        return make_url(text)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError(f"{mask(text)} is neither a file path nor a database URL") from None


# libpq also takes a password as a query parameter (`...?password=...`), and a key's passphrase
SECRET_QUERY_KEYS = ("password", "sslpassword")


def mask(target: str | os.PathLike | URL) -> str:
    """The target for messages: a URL's password (also one in its query) replaced by ***; an
    SQLite file as its path."""
    if isinstance(target, URL):
        if is_sqlite(target) and target.database and not target.query:
            return target.database
        hidden = {k: "***" for k in target.query if k.lower() in SECRET_QUERY_KEYS}
        return (target.update_query_dict(hidden).render_as_string(hide_password=True)
                .replace("%2A%2A%2A", "***"))
    text = os.fspath(target)
    if "://" not in text:
        return text
    try:
        return mask(make_url(text))
    except (sa.exc.ArgumentError, ValueError):
        return text.split("://", 1)[0] + "://***"


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path:
    return Path(url.database or "")


def make_engine(url: URL, readonly: bool | str = False) -> sa.Engine:
    """An engine for the worklist; SQLite gets WAL-friendly settings and explicit BEGINs.
    readonly (SQLite): True opens `mode=ro`, "immutable" also skips the -shm file (a database
    in a folder this process cannot write, which no one has open)."""
    if not is_sqlite(url):
        args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" \
            else {}
        return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True,
                                connect_args=args, pool_size=2, max_overflow=8)
    path = sqlite_path(url)
    if readonly:
        flags = "mode=ro&immutable=1" if readonly == "immutable" else "mode=ro"
        url = URL.create("sqlite", database=f"file:{path}?{flags}", query={"uri": "true"})
    # a few pooled connections: closing the last one checkpoints the WAL (milliseconds a call)
    engine = sa.create_engine(url, hide_parameters=True, pool_size=2, max_overflow=8,
                              connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_con, _record):
        dbapi_con.isolation_level = None  # no implicit transactions: we say BEGIN ourselves
        cur = dbapi_con.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # per connection, not the file
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(con):
        # a writer takes the lock now, not at its first write (no deadlock between upgrades)
        write = con.get_execution_options().get("write", False)
        con.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


_ENGINES: dict[tuple[str, int], sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(url: URL) -> sa.Engine:
    """One engine (one pool) per server URL and process, so a page that opens its Worklist at
    every rerun reuses connections instead of opening new ones (SQLite: make_engine)."""
    if is_sqlite(url):
        return make_engine(url)
    key = (url.render_as_string(hide_password=False), os.getpid())  # a fork gets its own pool
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = make_engine(url)
        return _ENGINES[key]


def local_now() -> datetime:
    """This machine's time, in UTC."""
    return datetime.now(UTC)


OFFSET_TTL_S = 300  # how long a measured offset to the server's clock is used
_OFFSETS: dict[int, tuple[float, timedelta]] = {}  # id(engine) -> (measured at, server - local)


def server_clock(engine: sa.Engine, url: URL) -> Callable[[], datetime]:
    """A clock that tells a server's time: claims and leases written by several machines then
    expire by one clock, not each machine's (a watcher whose clock is ahead would take a live
    lease). This machine's time plus its offset to the server's, measured every few minutes."""
    def now() -> datetime:
        got = _OFFSETS.get(id(engine))
        if got is None or time.monotonic() - got[0] > OFFSET_TTL_S:
            with connection(engine, url) as con:
                before = local_now()
                server = con.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
                after = local_now()
            got = _OFFSETS[id(engine)] = (time.monotonic(),
                                          server - (before + (after - before) / 2))
        return local_now() + got[1]
    return now


def unavailable(url: URL, exc: BaseException) -> WorklistUnavailable:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return WorklistUnavailable(
        f"the worklist database {mask(url)} cannot be reached"
        f"{': ' + reason[0] if reason else ''}. Nothing was recorded by this action; try again "
        "when the server is back.")


def _connection_lost(exc: sa.exc.DBAPIError, url: URL) -> bool:
    """An error of the connection, not of the statement (which a retry would repeat)."""
    if exc.connection_invalidated:
        return True
    if is_sqlite(url) or not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return False
    # no SQLSTATE: the client lost the server; class 08: connection exception; 57P: the server
    # shutting down (pg_ctl stop). A deadlock or lock timeout is the statement's, not this.
    state = getattr(exc.orig, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


@contextmanager
def connection(engine: sa.Engine, url: URL, write: bool = False):
    """A connection in a transaction (a writing one: BEGIN IMMEDIATE on SQLite), committed on
    success; the server going away becomes WorklistUnavailable."""
    for attempt in range(CONNECT_TRIES):
        try:
            con = engine.connect()
            break
        except sa.exc.DBAPIError as exc:
            if is_sqlite(url):
                raise _sqlite_error(url, exc) from None
            if attempt == CONNECT_TRIES - 1:
                raise unavailable(url, exc) from None
            time.sleep(0.5 * 2 ** attempt)
    try:
        with con:
            if write:
                con = con.execution_options(write=True)
            with con.begin():
                yield con
    except sa.exc.DBAPIError as exc:
        if _connection_lost(exc, url):
            raise unavailable(url, exc) from None
        if is_sqlite(url) and isinstance(exc, sa.exc.OperationalError):
            raise _sqlite_error(url, exc) from None
        raise


def _sqlite_error(url: URL, exc: sa.exc.DBAPIError) -> OSError:
    """SQLite's operational errors (cannot open, disk full, read-only) as an OSError naming the
    file, so callers show a message (the CLI prints it), not a traceback."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return OSError(f"worklist {sqlite_path(url)}: {reason}")
