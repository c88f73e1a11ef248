"""Times as the report's readers read them: in the study's time zone, named once at the top.

The web app shows study local time (``celltrial.web.forms.local_input``) and the AE checks label
each time (``celltrial.safety.events.show_time``); the report states its zone once ("Times are in
Asia/Shanghai (UTC+08:00)") and then prints every time with :func:`report_time`.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd


def report_time(value: datetime | pd.Timestamp | None, zone: str) -> str:
    """``value`` to the minute in ``zone`` ("2020-02-13 10:24"); "—" when missing.

    A naive time is taken as UTC, as the database stores times.
    """
    if value is None or pd.isna(value):
        return "—"
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(zone).strftime("%Y-%m-%d %H:%M")


def zone_note(zone: str, *, at: datetime | pd.Timestamp | None = None) -> str:
    """ "Times are in Asia/Shanghai (UTC+08:00)." — both offsets for a zone with summer time."""
    year = pd.Timestamp(at).year if at is not None and not pd.isna(at) else datetime.now().year
    tz = ZoneInfo(zone)
    offsets = dict.fromkeys(
        _offset(datetime(year, month, 1, 12, tzinfo=tz)) for month in (1, 7)
    )  # ordered, unique: winter first in the north, summer first in the south
    if len(offsets) == 1:
        return f"Times are in {zone} ({next(iter(offsets))})."
    return f"Times are in {zone} ({' or '.join(offsets)}, with daylight saving time)."


def _offset(moment: datetime) -> str:
    delta = moment.utcoffset()
    assert delta is not None
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"
