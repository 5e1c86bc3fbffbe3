"""A worklist for a team: DICOM references and sent marks on cases, simulated decisions,
reviewers' claims, workers' leases (work_items), and the indexes the Triage query uses.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision, branch_labels, depends_on = "0002", "0001", None, None

CASE_COLUMNS = ("study_uid", "series_uid", "sop_uid", "study_date", "results_sent_at",
                "result_sr_uid", "decision_sent_at")


def upgrade() -> None:
    for name in CASE_COLUMNS:
        op.add_column("cases", sa.Column(name, sa.Text))
    op.add_column("decisions", sa.Column("simulated", sa.Boolean, nullable=False,
                                         server_default=sa.false()))
    op.create_table(
        "claims",
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
    )
    op.create_table(
        "work_items",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("checkpoint_hash", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("leased_by", sa.Text),
        sa.Column("lease_until", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("work_items_state", "work_items", ["checkpoint_hash", "state"])
    op.create_index("cases_checkpoint", "cases", ["checkpoint_hash"])


def downgrade() -> None:
    op.drop_index("cases_checkpoint", "cases")
    op.drop_table("work_items")
    op.drop_table("claims")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("simulated")
    with op.batch_alter_table("cases") as batch:
        for name in CASE_COLUMNS:
            batch.drop_column(name)
