"""audit events are chained by hash: a changed, removed or inserted event breaks the chain

Each event gets ``chain_hash``: SHA-256 over the previous event's hash and its own content
(``celltrial.store.audit.compute_chain_hash``). The events already stored are chained here, in id
order; the append-only triggers are lifted for that one update and put back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from celltrial.store.audit import CHAINED_FIELDS, compute_chain_hash
from celltrial.store.types import FiniteJSON, UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS = sa.table(
    "audit_event",
    sa.column("id", sa.Integer()),
    sa.column("chain_hash", sa.String()),
    sa.column("time", UTCDateTime()),
    sa.column("user", sa.String()),
    sa.column("action", sa.String()),
    sa.column("table_name", sa.String()),
    sa.column("row_id", sa.String()),
    sa.column("before", FiniteJSON()),
    sa.column("after", FiniteJSON()),
    sa.column("reason", sa.Text()),
    sa.column("import_batch_id", sa.Integer()),
    sa.column("source_sha256", sa.String()),
    sa.column("subject_id", sa.Integer()),
)
_SQLITE_NO_UPDATE = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
)


def upgrade() -> None:
    # a plain ADD COLUMN (no table copy on SQLite: the append-only triggers stay in place)
    op.add_column("audit_event", sa.Column("chain_hash", sa.String(64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_EVENTS.c.id, *(_EVENTS.c[f] for f in CHAINED_FIELDS)).order_by(_EVENTS.c.id)
    ).all()
    if not rows:
        return
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
    elif bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
    previous = None
    for row in rows:
        previous = compute_chain_hash(previous, row._mapping)
        bind.execute(_EVENTS.update().where(_EVENTS.c.id == row.id).values(chain_hash=previous))
    if bind.dialect.name == "sqlite":
        op.execute(_SQLITE_NO_UPDATE)
    elif bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


def downgrade() -> None:
    op.drop_column("audit_event", "chain_hash")  # no table copy either (SQLite ≥ 3.35)
