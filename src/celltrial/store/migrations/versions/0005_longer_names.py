"""longer clinical_status.oxygen_support and audit_event.table_name (PostgreSQL enforces lengths)

SQLite ignores VARCHAR lengths, PostgreSQL does not: a WHO scale 9 day ("invasive ventilation and
vasopressors", 36 characters) and the audit row of a bulk load naming every table it wrote
("subject,product_lot,infusion,…") could not be stored there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite rebuilds a table to change a column type, which drops its triggers: put back the
# append-only triggers of 0001 on audit_event
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
)


def _resize(table: str, column: str, old: int, new: int) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.alter_column(
            column,
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=table != "audit_event",
        )


def _resize_audit_table_name(old: int, new: int) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _resize("audit_event", "table_name", old, new)
    if sqlite:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def upgrade() -> None:
    _resize("clinical_status", "oxygen_support", 32, 64)
    _resize_audit_table_name(32, 255)


def downgrade() -> None:
    _resize_audit_table_name(255, 32)
    _resize("clinical_status", "oxygen_support", 64, 32)
