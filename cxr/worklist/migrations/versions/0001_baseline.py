"""The worklist as it was before Alembic (the last hand-written schema and its _MIGRATIONS).

On an empty database it creates that schema. On a legacy one (tables, no alembic_version) it
adds what the older hand-written migrations added, filled as they filled it: cases flagged by the
per-finding rule get uncertainty_rule 'any' (their uncertainty was the max std) and their max
std; the readout's columns stay NULL (no readout was imported with them).

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

from cxr.labels import FINDINGS

revision, down_revision, branch_labels, depends_on = "0001", None, None, None

DECISIONS = ("agree", "disagree", "second_read")
PROB, STD = [f"prob_{f}" for f in FINDINGS], [f"std_{f}" for f in FINDINGS]
CAL, CALL = [f"cal_{f}" for f in FINDINGS], [f"call_{f}" for f in FINDINGS]
REAL = sa.Float().with_variant(sa.REAL(), "sqlite")
# the columns the hand-written migrations added, in their order, and how old rows were filled
ADDED = (("uncertainty_rule", sa.Text, "UPDATE cases SET uncertainty_rule = 'any' "
                                       "WHERE uncertainty IS NOT NULL"),
         ("max_std", REAL, "UPDATE cases SET max_std = {}({})"),
         *((c, REAL, None) for c in CAL), *((c, sa.Text, None) for c in CALL),
         ("operating_point", sa.Text, None), ("ood_score", REAL, None),
         ("ood", sa.Integer, None))


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table("cases"):
        _create()
        return
    have = {c["name"] for c in inspector.get_columns("cases")}
    for name, kind, fill in ADDED:
        if name not in have:
            op.add_column("cases", sa.Column(name, kind))
            if fill:  # SQLite's many-argument MAX is GREATEST elsewhere
                greatest = "MAX" if bind.dialect.name == "sqlite" else "GREATEST"
                op.execute(fill.format(greatest, ", ".join(f'"{c}"' for c in STD)))
    if "decisions_case" not in {i["name"] for i in inspector.get_indexes("decisions")}:
        op.create_index("decisions_case", "decisions", ["case_id", "id"])


def _create() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("checkpoint_hash", sa.Text, nullable=False),
        *(sa.Column(c, REAL, nullable=False) for c in PROB),
        *(sa.Column(c, REAL) for c in STD),
        sa.Column("uncertainty", REAL),
        sa.Column("uncertainty_rule", sa.Text),
        sa.Column("mean_std", REAL),
        sa.Column("max_std", REAL),
        sa.Column("uncertain", sa.Integer, nullable=False),
        *(sa.Column(c, REAL) for c in CAL),
        *(sa.Column(c, sa.Text) for c in CALL),
        sa.Column("operating_point", sa.Text),
        sa.Column("ood_score", REAL),
        sa.Column("ood", sa.Integer),
        sa.Column("source_csv", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.UniqueConstraint("image", "checkpoint_hash"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("decision", sa.Text, sa.CheckConstraint(f"decision IN {DECISIONS}"),
                  nullable=False),
        sa.Column("corrected", sa.Text),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("decisions_case", "decisions", ["case_id", "id"])


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: restore a backup instead")
