"""Text people type into the study that it can keep and show: no control characters.

Control characters cannot be seen on a page or in the audit trail, and PostgreSQL cannot keep
the NUL character in text at all (a value holding one reached the database as a server error).
Names and other one-line text may hold none of them; free text (a reason) may hold tabs and
line breaks.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters and DEL (Unicode category Cc).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character_problem(value: str, *, lines: bool = False) -> str | None:
    """What is wrong with ``value`` when it holds a control character, in plain words (None
    when it holds none); ``lines``: tabs and line breaks are allowed."""
    found = (_CONTROL_BUT_LINES if lines else _CONTROL).search(value)
    if found is None:
        return None
    code = ord(found.group())
    what = "the NUL character" if code == 0 else "an invisible control character"
    return f"contains {what} (U+{code:04X}); type it again without it"
