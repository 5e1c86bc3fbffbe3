"""The worklist's tables at the code's schema (Alembic head), as SQLAlchemy Core objects.

One row per case (one film as read by one checkpoint), per-finding columns so filters run in
SQL; decisions are appended, never updated; claims and work items are the team's leases.
Times are ISO 8601 UTC strings (microseconds), so they sort and compare as text on every
backend. The migrations (cxr/worklist/migrations) build exactly these tables.
"""
from __future__ import annotations

import sqlalchemy as sa

from cxr.labels import FINDINGS

DECISIONS = ("agree", "disagree", "second_read")
STATUSES = ("pending", *DECISIONS)
WORK_STATES = ("pending", "leased", "done", "failed")
PROB = [f"prob_{f}" for f in FINDINGS]  # the cases table has one column per finding of each
STD = [f"std_{f}" for f in FINDINGS]
CAL = [f"cal_{f}" for f in FINDINGS]    # ... and, from a readout, of these
CALL = [f"call_{f}" for f in FINDINGS]
DICOM_REFS = ("study_uid", "series_uid", "sop_uid", "study_date")
SENT = ("results_sent_at", "result_sr_uid", "decision_sent_at")

# REAL in SQLite (as the first schema said), double precision elsewhere.
REAL = sa.Float().with_variant(sa.REAL(), "sqlite")

metadata = sa.MetaData()

cases = sa.Table(
    "cases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image", sa.Text, nullable=False),  # the film's path below the input root
    sa.Column("path", sa.Text),                   # where the film is, when known
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("checkpoint_hash", sa.Text, nullable=False),  # sha256 of the checkpoint file
    *(sa.Column(c, REAL, nullable=False) for c in PROB),
    *(sa.Column(c, REAL) for c in STD),
    sa.Column("uncertainty", REAL),       # image score under uncertainty_rule (NULL: no std)
    sa.Column("uncertainty_rule", sa.Text),  # 'mean' or 'any' (NULL: no std)
    sa.Column("mean_std", REAL),
    sa.Column("max_std", REAL),
    sa.Column("uncertain", sa.Integer, nullable=False),  # 1: flagged uncertain under the rule
    *(sa.Column(c, REAL) for c in CAL),
    *(sa.Column(c, sa.Text) for c in CALL),
    sa.Column("operating_point", sa.Text),  # where the calls were made (NULL: no readout)
    sa.Column("ood_score", REAL),
    sa.Column("ood", sa.Integer),           # 1: out of distribution (NULL: no readout)
    sa.Column("source_csv", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    *(sa.Column(c, sa.Text) for c in DICOM_REFS),  # filled by the PACS pull
    *(sa.Column(c, sa.Text) for c in SENT),
    sa.UniqueConstraint("image", "checkpoint_hash"),
    sa.Index("cases_checkpoint", "checkpoint_hash"),
)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("decision", sa.Text, sa.CheckConstraint(f"decision IN {DECISIONS}"),
              nullable=False),
    sa.Column("corrected", sa.Text),  # JSON list of the findings the reviewer says are present
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("simulated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("decisions_case", "case_id", "id"),
    sqlite_autoincrement=True,
)

claims = sa.Table(
    "claims", metadata,
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Text, nullable=False),
)

work_items = sa.Table(
    "work_items", metadata,
    sa.Column("key", sa.Text, primary_key=True),          # a Study Instance UID
    sa.Column("checkpoint_hash", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("leased_by", sa.Text),
    sa.Column("lease_until", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("work_items_state", "checkpoint_hash", "state"),
)
