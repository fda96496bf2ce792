"""reply drafts: the triage advice, the draft and whether it hands off to a DM

Revision ID: 0002_replies
Revises: 0001
Create Date: 2026-11-24 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_replies"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "triage",
                sa.Enum(
                    "reply", "thank", "skip", name="triage_advice", native_enum=False, length=32
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("reply_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("dm_handoff", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.drop_column("dm_handoff")
        batch_op.drop_column("reply_text")
        batch_op.drop_column("triage")
