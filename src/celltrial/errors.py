"""Errors a user can cause.

Every error raised because of user input (a bad protocol file, a wrong option, a missing study)
is a :class:`CelltrialError`. Its message says where (file, line, row, field) and what was expected;
the CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations


class CelltrialError(Exception):
    """Base class of every error a user can cause and fix."""


class ProtocolError(CelltrialError):
    """A study protocol file is missing, unreadable or invalid."""


class StudyError(CelltrialError):
    """A study directory or database is missing, unreadable or inconsistent."""


class StudyBusy(StudyError):
    """Another writer (an import, the web app) held the study database longer than a write waits;
    nothing of this write was stored, and the same write can be tried again."""

    #: Seconds after which trying again is sensible (the web app's Retry-After).
    retry_after_seconds = 10


class DataError(CelltrialError):
    """Study data (subjects, infusions, observations…) violate a rule."""


class UnitError(CelltrialError):
    """A value's unit is unknown or cannot be converted to the one required."""


class EntryRefused(DataError):
    """An entry not saved, said field by field (each field as the form and the API name it).

    ``problems`` must be corrected; ``overridable`` are refused unless the user gives a reason to
    override them (kept in the audit trail); ``warnings`` are saved once the user confirms them
    (the confirmation is kept in the audit trail too). The message lists them all in plain words.
    """

    def __init__(
        self,
        message: str,
        *,
        problems: dict[str, list[str]] | None = None,
        overridable: dict[str, list[str]] | None = None,
        warnings: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.problems = problems or {}
        self.overridable = overridable or {}
        self.warnings = warnings or {}
