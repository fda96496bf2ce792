"""accounts: an FAQ entry may need the customer's account (its reply drafts hand off to a DM)

Revision ID: 0004_accounts
Revises: 0001
Create Date: 2026-12-03 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_accounts"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, not batch mode: on SQLite batch mode would rebuild faq_entry, and
    # dropping the old table with foreign keys on cascades to every revision.
    op.add_column(
        "faq_entry",
        sa.Column("needs_account", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("faq_entry", "needs_account")  # SQLite 3.35+ drops columns in place
