"""audit events name the subject whose data they change

Readers that keep a subject's records (the web app's subject pages) tell from the events since
they last looked whether that subject's data changed. Empty for events before this revision and
for changes that are not one subject's (lots, accounts, imports).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (no table copy on SQLite: the append-only triggers stay in place)
    op.add_column("audit_event", sa.Column("subject_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_event", "subject_id")  # no table copy either (SQLite ≥ 3.35)
