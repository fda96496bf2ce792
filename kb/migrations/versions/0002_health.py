"""content health: flag revision, language, category, checked_at; one open flag per problem;
indexes to read an article's views and votes by entry

Revision ID: 0002_health
Revises: 0001
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_health"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("category", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_flag_revision_id_faq_revision"),
            "faq_revision",
            ["revision_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_flag_language"), ["language"], unique=False)
        batch_op.create_index(
            "uq_flag_open_kind_key",
            ["kind", "key"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )


    with op.batch_alter_table("page_view", schema=None) as batch_op:
        batch_op.create_index("ix_page_view_entry_id_day", ["entry_id", "day"], unique=False)
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.create_index("ix_vote_entry_id", ["entry_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.drop_index("ix_vote_entry_id")
    with op.batch_alter_table("page_view", schema=None) as batch_op:
        batch_op.drop_index("ix_page_view_entry_id_day")
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.drop_index("uq_flag_open_kind_key")
        batch_op.drop_index(batch_op.f("ix_flag_language"))
        batch_op.drop_constraint(batch_op.f("fk_flag_revision_id_faq_revision"), type_="foreignkey")
        batch_op.drop_column("checked_at")
        batch_op.drop_column("category")
        batch_op.drop_column("language")
        batch_op.drop_column("revision_id")
