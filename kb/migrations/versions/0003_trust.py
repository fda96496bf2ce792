"""trust: phrasings learnt from outcomes wait for approval (status) and agents' agreement

Revision ID: 0003_trust
Revises: 0001
Create Date: 2026-12-03 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_trust"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("question_phrasing", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sa.Enum(
                    "approved", "pending", name="phrasing_status", native_enum=False, length=32
                ),
                server_default="approved",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("approved_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "phrasing_agreement",
        sa.Column("phrasing_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_phrasing_agreement_api_key_id_api_key"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["phrasing_id"],
            ["question_phrasing.id"],
            name=op.f("fk_phrasing_agreement_phrasing_id_question_phrasing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("phrasing_id", "api_key_id", name=op.f("pk_phrasing_agreement")),
    )


def downgrade() -> None:
    op.drop_table("phrasing_agreement")
    with op.batch_alter_table("question_phrasing", schema=None) as batch_op:
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("status")
