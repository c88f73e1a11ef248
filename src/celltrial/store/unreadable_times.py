"""Times a study database holds but celltrial cannot read, and saying which rows to correct.

An older celltrial, or an edit outside it, may have stored a time of year 0 or 10000, a text
that is no date, or one outside the years study data fall in (1900–2099, as imports check).
Such a value does not stop a command: the column type
(:class:`celltrial.store.types.UTCDateTime`) reads it as unknown (None) and notes its text here
(:func:`note_unreadable_time`); a result whose time is unknown is then left out of analyses and a
subject fact (a death time) is unknown. Only when something was noted does
:func:`unreadable_time_warnings` scan the time columns to name each such value's table, row,
subject and column (never on every open: the scan reads every time column of the study).

Light on purpose: the column type imports it, and the models are imported only by the scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Stored instants (UTC) celltrial reads: the years study data fall in (1900–2099 local time,
#: :mod:`celltrial.ingest.times`), with a day's margin for the time zone's offset.
EARLIEST = datetime(1899, 12, 31)
LATEST = datetime(2100, 1, 2)
#: Distinct texts noted at most (a whole column of them needs no more to be told).
_MAX_NOTED = 100
#: Per table: the column that says which of a subject's rows it is, and how to say it.
_WHICH = {
    "observation": ("test", "{}"),
    "adverse_event": ("term", "{}"),
    "infusion": ("number", "infusion {}"),
}

_noted: set[str] = set()
_notice: Callable[[str], None] | None = None
#: URLs of the databases opened since :func:`forget_unreadable_times` (not their engines: a
#: kept engine would keep its connections open).
_opened: set[str] = set()


@dataclass(frozen=True)
class UnreadableTime:
    """One stored time celltrial cannot read: where it is, and the text stored."""

    table: str
    row_id: str
    column: str
    text: str
    subject: str | None = None
    which: str | None = None

    @property
    def sentence(self) -> str:
        """Where the value is and what to do, in one sentence (without a leading "warning:")."""
        about = ", ".join(
            part for part in (self.subject and f"subject {self.subject}", self.which) if part
        )
        what = (
            f"a time outside the years {EARLIEST.year + 1}–{LATEST.year - 1}"
            if _is_date(self.text)
            else "a time that cannot be read"
        )
        return (
            f"the study database holds {what}: {self.table} row {self.row_id}"
            f'{f" ({about})" if about else ""}, {self.column} "{self.text}": left out until '
            "corrected"
        )


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def remember_database(url: str) -> None:
    """Record that the database at ``url`` was opened (:func:`say_unreadable_times` scans it)."""
    if len(_opened) < _MAX_NOTED:
        _opened.add(url)


def note_unreadable_time(value: Any) -> None:
    """Record that a stored time (``value``, as the database gave it) could not be read."""
    if len(_noted) < _MAX_NOTED:
        _noted.add(_shown(value))


def noted_texts() -> frozenset[str]:
    """The texts noted so far (a worker process hands them to its parent)."""
    return frozenset(_noted)


def note_texts(texts: Iterable[str]) -> None:
    """Record texts another process noted (see :func:`noted_texts`) as if noted here."""
    for text in texts:
        if len(_noted) >= _MAX_NOTED:
            break
        _noted.add(text)


def unreadable_times_noted() -> bool:
    """Whether a time that cannot be read was met since :func:`forget_unreadable_times`."""
    return bool(_noted)


def forget_unreadable_times() -> None:
    """Start afresh (a command line command starts with nothing noted or opened)."""
    _noted.clear()
    _opened.clear()


def notify_unreadable_times(notice: Callable[[str], None] | None) -> None:
    """Have ``notice`` called with each sentence of :func:`say_unreadable_times` (the command
    line prints them; None: nobody is told)."""
    global _notice
    _notice = notice


def say_unreadable_times() -> None:
    """Tell the registered notice about each unreadable time of the databases opened, once: only
    when one was met while reading them (the command line calls it when a command ends)."""
    if _notice is None or not _noted:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from celltrial.store.database import open_engine

    sentences: list[str] = []
    for url in sorted(_opened):
        engine = open_engine(url)
        try:
            sentences += [s for s in unreadable_time_warnings(engine) if s not in sentences]
        except SQLAlchemyError:  # gone or unreachable since: the texts met are said below
            pass
        finally:
            engine.dispose()
    if not sentences:  # met, but no longer there (another writer corrected it meanwhile)
        texts = ", ".join(f'"{text}"' for text in sorted(_noted))
        sentences = [f"a stored time that could not be read ({texts}) was left out"]
    for sentence in sentences:
        _notice(sentence)
    forget_unreadable_times()


def unreadable_time_warnings(engine: Any) -> list[str]:
    """One sentence per unreadable time of ``engine``'s database, naming its row (none unless
    one was met while reading: :func:`unreadable_times_noted`)."""
    if not _noted:
        return []
    return [item.sentence for item in find_unreadable_times(engine)]


def unreadable_time_notes(engine: Any) -> list[str]:
    """:func:`unreadable_time_warnings` as sentences for a page (capital, full stop)."""
    return [f"{s[:1].upper()}{s[1:]}." for s in unreadable_time_warnings(engine)]


def find_unreadable_times(engine: Any) -> list[UnreadableTime]:
    """Every stored time of ``engine``'s database that celltrial cannot read, with where it is
    (a scan of every time column; SQLite compares the stored text, PostgreSQL the instant)."""
    from celltrial.store.models import Base
    from celltrial.store.types import UTCDateTime, read_stored_time

    sqlite = engine.dialect.name == "sqlite"
    found: list[UnreadableTime] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, UTCDateTime):
                    continue
                for row in connection.execute(_scan(table, column, sqlite=sqlite)):
                    if sqlite and read_stored_time(row.stored) is not None:
                        continue  # a form SQLite's date functions do not know, but readable
                    found.append(
                        UnreadableTime(
                            table=table.name,
                            row_id=str(row.row_id),
                            column=column.name,
                            text=_shown(row.stored),
                            subject=row.subject,
                            which=None
                            if row.which is None
                            else _WHICH[table.name][1].format(row.which),
                        )
                    )
    return found


def _scan(table: Any, column: Any, *, sqlite: bool) -> Any:
    """The rows of ``table`` whose ``column`` holds a time celltrial cannot read (on SQLite a
    superset, checked again in Python: any text SQLite's date functions do not give back
    unchanged) with row id, stored text, subject code and which of the subject's rows it is."""
    from sqlalchemy import String, cast, func, null, or_, select, type_coerce

    from celltrial.store.models import Subject

    if sqlite:
        stored = type_coerce(column, String)
        wrong = or_(
            func.typeof(column) != "text",
            stored < EARLIEST.isoformat(" "),
            stored >= LATEST.isoformat(" "),
            func.datetime(func.julianday(column)).is_distinct_from(func.substr(column, 1, 19)),
        )
    else:  # the server compares instants; the text is the server's own
        stored = cast(column, String)
        wrong = or_(column < EARLIEST.replace(tzinfo=UTC), column >= LATEST.replace(tzinfo=UTC))
    (row_id,) = table.primary_key.columns  # every table has a key of one column
    source = table
    if table.name == "subject":
        subject = table.c.code
    elif "subject_id" in table.c:
        source = table.outerjoin(Subject, Subject.id == table.c.subject_id)
        subject = Subject.code
    else:
        subject = null()
    which = table.c[_WHICH[table.name][0]] if table.name in _WHICH else null()
    return (
        select(
            row_id.label("row_id"),
            stored.label("stored"),
            subject.label("subject"),
            which.label("which"),
        )
        .select_from(source)
        .where(column.is_not(None), wrong)
        .order_by(row_id)
    )


def _shown(value: Any) -> str:
    """A stored value as the warning quotes it (no trailing zero fraction of a second)."""
    text = value if isinstance(value, str) else str(value)
    return text.removesuffix(".000000")
