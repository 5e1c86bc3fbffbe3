"""Workers' leases on work items (the PACS watcher): a study is read once per checkpoint, by one
worker at a time, and a crashed worker's item is picked up again when its lease runs out.

    >>> wl.enqueue_work(["1.2.840.1", "1.2.840.2"], checkpoint_hash=h)   # 2 new
    >>> for key in wl.lease_work(h, worker="watcher-a", limit=4, seconds=300):
    ...     wl.finish_work(key, h, "watcher-a", state="done")
    >>> wl.renew_lease(key, h, "watcher-a", seconds=300)   # False: another worker has it now

lease_work takes the rows with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so several
workers on several machines never lease one item twice; on SQLite the transaction holds the
file's write lock (BEGIN IMMEDIATE), which serialises them the same way.
"""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from cxr.worklist.schema import work_items

FINISHED = ("done", "failed")


class WorkMixin:
    def enqueue_work(self, keys: list[str], checkpoint_hash: str) -> int:
        """Add work items (pending); returns how many were new. Known keys keep their state."""
        from cxr.worklist.store import insert_ignore

        rows = [{"key": str(k), "checkpoint_hash": str(checkpoint_hash), "state": "pending",
                 "attempts": 0, "updated_at": self._now(), "detail": ""}
                for k in dict.fromkeys(keys)]
        if not rows:
            return 0
        stmt = insert_ignore(work_items, self.url.get_backend_name()).returning(work_items.c.key)
        with self._write() as con:
            return len(con.execute(stmt, rows).all())

    def lease_work(self, checkpoint_hash: str, worker: str, limit: int = 1,
                   seconds: int = 300) -> list[str]:
        """Lease up to `limit` items that are pending, or leased with an expired lease, to
        `worker` for `seconds`; returns their keys (oldest first), attempts incremented."""
        if not str(worker).strip():
            raise ValueError("a lease needs the worker's name")
        now, until = self._now(lease=True), self._now(plus_seconds=seconds, lease=True)
        w = work_items.c
        free = sa.or_(w.state == "pending", sa.and_(w.state == "leased", w.lease_until < now))
        with self._write() as con:
            keys = con.execute(
                sa.select(w.key).where(w.checkpoint_hash == str(checkpoint_hash), free)
                .order_by(w.updated_at, w.key).limit(int(limit))
                .with_for_update(skip_locked=True)).scalars().all()
            if keys:
                con.execute(work_items.update()
                            .where(w.checkpoint_hash == str(checkpoint_hash), w.key.in_(keys))
                            .values(state="leased", leased_by=str(worker), lease_until=until,
                                    attempts=w.attempts + 1, updated_at=now))
        return list(keys)

    def renew_lease(self, key: str, checkpoint_hash: str, worker: str,
                    seconds: int = 300) -> bool:
        """Extend `worker`'s lease on an item for `seconds` from now (a long study, or one read
        again after an interruption). True when it still holds it (an expired lease nobody
        took yet counts); False when another worker took it over or it is finished: the
        caller must then leave the item to that worker. ValueError for an unknown item."""
        return self._update_held(key, checkpoint_hash, worker,
                                 lease_until=self._now(plus_seconds=seconds, lease=True),
                                 updated_at=self._now())

    def finish_work(self, key: str, checkpoint_hash: str, worker: str, state: str = "done",
                    detail: str = "") -> bool:
        """Mark a leased item done or failed. True when recorded; False when `worker` no longer
        holds the lease (it expired and another worker took it: nothing changed). ValueError for
        an unknown item or state."""
        if state not in FINISHED:
            raise ValueError(f"state {state!r} is not one of {FINISHED}")
        return self._update_held(key, checkpoint_hash, worker, state=state, detail=str(detail),
                                 lease_until=None, updated_at=self._now())

    def _update_held(self, key: str, checkpoint_hash: str, worker: str, **values) -> bool:
        """Set `values` on an item only while `worker` holds its lease (the row locked while
        checked); False, changing nothing, when it does not. ValueError for an unknown item."""
        w = work_items.c
        where = (w.key == str(key), w.checkpoint_hash == str(checkpoint_hash))
        with self._write() as con:
            row = con.execute(sa.select(w.leased_by, w.state).where(*where)
                              .with_for_update()).first()
            if row is None:
                raise ValueError(f"no work item {key!r} for checkpoint {checkpoint_hash}")
            if row.leased_by != str(worker) or row.state != "leased":
                return False
            con.execute(work_items.update().where(*where).values(**values))
        return True

    def work_items(self, checkpoint_hash: str | None = None) -> pd.DataFrame:
        """The work items (key, checkpoint_hash, state, leased_by, lease_until, attempts,
        updated_at, detail), oldest first."""
        w = work_items.c
        stmt = sa.select(w.key, w.checkpoint_hash, w.state, w.leased_by, w.lease_until,
                         w.attempts, w.updated_at, w.detail).order_by(w.updated_at, w.key)
        if checkpoint_hash is not None:
            stmt = stmt.where(w.checkpoint_hash == str(checkpoint_hash))
        return self._frame(stmt)
