"""Alembic environment: runs migrations on the engine celltrial passes in."""

from alembic import context

from celltrial.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # `alembic` run by hand with sqlalchemy.url in an ini file
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # a SQLite table rebuild (batch mode) drops the old table, which foreign keys from
            # other tables refuse; the pragma only changes outside a transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                context.configure(
                    connection=connection, target_metadata=target_metadata, render_as_batch=sqlite
                )
                context.run_migrations()
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _check_foreign_keys(connection) -> None:
    """Refuse (roll back) a SQLite migration that left a row pointing at nothing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise RuntimeError(
            f"migration left {len(broken)} broken reference(s), e.g. {table} row {rowid} "
            f"pointing at no {parent} row"
        )


run_migrations()
