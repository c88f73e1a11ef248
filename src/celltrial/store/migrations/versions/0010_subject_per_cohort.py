"""subjects are identified by (study, cohort, code): each external cohort is its own namespace

Before, (study, code) was unique: a second external cohort numbered 1…N like the first was merged
onto the first's patients. Now the unique key is (study, cohort, code), with a partial unique
index on (study, code) for the study's own subjects (cohort NULL: SQL unique constraints treat
NULLs as distinct). SQLite rebuilds the subject table for it (its unnamed constraint cannot be
dropped in place); the migration environment runs SQLite migrations with foreign keys off and
checks them afterwards.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = "uq_subject_study_cohort_code"
_OWN = "uq_subject_study_code_own"
#: How SQLite batch mode names the old, unnamed (study_id, code) constraint when it reflects it.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}


def _old_constraint_name() -> str | None:
    """The (study_id, code) unique constraint as the server named it (PostgreSQL)."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("subject"):
        if list(constraint["column_names"]) == ["study_id", "code"]:
            return constraint["name"]
    return None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "subject", naming_convention=_NAMING, recreate="always"
        ) as batch_op:
            batch_op.drop_constraint("uq_subject_study_id_code", type_="unique")
            batch_op.create_unique_constraint(_NEW, ["study_id", "cohort", "code"])
    else:
        name = _old_constraint_name()
        if name is not None:
            op.drop_constraint(name, "subject", type_="unique")
        op.create_unique_constraint(_NEW, "subject", ["study_id", "cohort", "code"])
    op.create_index(
        _OWN,
        "subject",
        ["study_id", "code"],
        unique=True,
        sqlite_where=sa.text("cohort IS NULL"),
        postgresql_where=sa.text("cohort IS NULL"),
    )


def downgrade() -> None:
    # refused by the database when two cohorts share a code: that is the data this revision allows
    op.drop_index(_OWN, table_name="subject")
    with op.batch_alter_table("subject") as batch_op:
        batch_op.drop_constraint(_NEW, type_="unique")
        batch_op.create_unique_constraint("uq_subject_study_id_code", ["study_id", "code"])
