"""the audit trail of one record is found through an index (table, row), not a table scan

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_event_record", "audit_event", ["table_name", "row_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_record", table_name="audit_event")
