"""A PostgreSQL role for running a study that owns no table, so it cannot lift the audit log.

The audit log's append-only triggers stop UPDATE, DELETE and TRUNCATE; a table's owner can
still disable them. In a deployment the schema belongs to an owner role that only migrates
(``celltrial migrate DIR --db OWNER_URL --grant-to ROLE``), and celltrial runs as ``ROLE``: it
reads and writes the study's data, may only add to the audit log, and owns nothing.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from celltrial.errors import StudyError
from celltrial.store.models import AuditEvent


def grant_statements(role: str, quote) -> list[str]:
    """The SQL that gives ``role`` (quoted by ``quote``) what celltrial needs and no more."""
    who = quote(role)
    audit = quote(AuditEvent.__tablename__)
    return [
        f"GRANT USAGE ON SCHEMA public TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {audit} FROM {who}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}",
    ]


def grant_app_role(engine: Engine, role: str) -> None:
    """Give ``role`` the rights of :func:`grant_statements` on ``engine``'s database (run as
    the schema's owner, after migrating). Refused on SQLite and for the owner itself."""
    if engine.dialect.name != "postgresql":
        raise StudyError("--grant-to needs a PostgreSQL database (SQLite has no roles)")
    role = role.strip()
    if not role:
        raise StudyError("--grant-to: name the role celltrial runs as")
    with engine.begin() as connection:
        exists = connection.scalar(
            text("SELECT count(*) FROM pg_roles WHERE rolname = :role"), {"role": role}
        )
        if not exists:
            raise StudyError(f"--grant-to: there is no role {role!r} on this server")
        owner = connection.scalar(
            text("SELECT tableowner FROM pg_tables WHERE tablename = :table"),
            {"table": AuditEvent.__tablename__},
        )
        if owner == role:
            raise StudyError(
                f"--grant-to: {role!r} owns the study's tables and could lift the audit log's "
                "triggers; run celltrial as another role"
            )
        quote = connection.dialect.identifier_preparer.quote
        for statement in grant_statements(role, quote):
            connection.exec_driver_sql(statement)
