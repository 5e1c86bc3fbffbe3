"""The review worklist (cases, reviewers' decisions, claims, work leases) on SQLite or
PostgreSQL. `from cxr.worklist import Worklist, ...` is the interface; modules:

    schema   the tables at the code's schema (SQLAlchemy Core)
    db       paths and URLs, engines, transactions, WorklistUnavailable / SchemaMismatch
    migrate  Alembic revisions (migrations/): where a database stands, upgrading it
    store    Worklist: import, queries, decisions, DICOM marks, export
    claims   reviewers' claims on cases      work   workers' leases on work items
    copy     copy one worklist into another  cli    `cxr worklist ...`
"""
from cxr.hashing import file_sha256
from cxr.worklist.claims import CLAIM_MINUTES, Claim
from cxr.worklist.cli import add_arguments, run
from cxr.worklist.db import (BUSY_TIMEOUT_MS, CaseChanged, SchemaMismatch, WorklistUnavailable,
                             mask)
from cxr.worklist.schema import CAL, CALL, DECISIONS, DICOM_REFS, PROB, STATUSES, STD
from cxr.worklist.store import DEFAULT_DB, SORTABLE, Worklist, readout_line

__all__ = ["BUSY_TIMEOUT_MS", "CAL", "CALL", "CLAIM_MINUTES", "DECISIONS", "DEFAULT_DB",
           "DICOM_REFS", "PROB", "SORTABLE", "STATUSES", "STD", "CaseChanged", "Claim",
           "SchemaMismatch", "Worklist", "WorklistUnavailable", "add_arguments", "file_sha256",
           "mask",
           "readout_line", "run"]
