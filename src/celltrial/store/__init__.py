"""The study database: ORM models, engine and sessions, audit log, migrations.

Only this package talks to the database; see :mod:`celltrial.store.frames` for what analyses get.
"""
