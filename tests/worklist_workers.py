"""Worker processes for the worklist load and fault tests (tests/test_worklist_load.py), run as
    python tests/worklist_workers.py ACTION '{"db": ..., ...}'
with the repository on PYTHONPATH. Each waits for the `go` file (when given) so all start at
once, does its work and prints one JSON line."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _wait(go: str | None) -> None:
    while go and not Path(go).exists():
        time.sleep(0.005)


def reviewer(db, ids, name, n, go=None):
    from cxr.worklist import Worklist

    wl = Worklist(db, create=False)
    _wait(go)
    for i in range(n):
        wl.record_decision(ids[i % len(ids)], ("agree", "disagree")[i % 2], reviewer=name,
                           note=f"{name}-{i}")
    return {"recorded": n}


def importer(db, csv, checkpoint_hash, go=None):
    from cxr.evaluation.predictions import read_predictions
    from cxr.worklist import Worklist

    wl, preds = Worklist(db, create=False), read_predictions(csv)
    _wait(go)
    return wl.import_predictions(csv, "fusion", checkpoint_hash, preds=preds)


def leaser(db, checkpoint_hash, name, go=None):
    from cxr.worklist import Worklist

    wl, got = Worklist(db, create=False), []
    _wait(go)
    while keys := wl.lease_work(checkpoint_hash, name, limit=2, seconds=600):
        for key in keys:
            assert wl.finish_work(key, checkpoint_hash, name)
        got.extend(keys)
    return {"keys": got}


def import_and_hang(db, csv, checkpoint_hash, flag):
    """Import, but stop just before the transaction commits: write `flag`, then wait to be
    killed (the test SIGKILLs this process there)."""
    from sqlalchemy import event

    from cxr.worklist import Worklist

    wl = Worklist(db, create=False)

    @event.listens_for(wl._writer or wl.engine, "commit")
    def _hang(_con):
        Path(flag).write_text("in the transaction")
        time.sleep(600)

    wl.import_predictions(csv, "fusion", checkpoint_hash)
    return {"committed": True}


if __name__ == "__main__":
    action, kwargs = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[action](**kwargs)))
