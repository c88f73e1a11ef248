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
