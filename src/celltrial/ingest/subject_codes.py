"""What a new subject code may be: the one rule every way in applies (imports, enrolment).

A subject's code is part of its page's address (``/subjects/<code>``): a ``/`` made the page of
subject ``A/1`` unreachable, ``?``, ``#`` and ``%`` cut or change the address, ``.`` and ``..``
are removed by browsers, control characters cannot be seen. New codes are therefore letters and
digits (of any alphabet), with spaces and the punctuation of :data:`ALLOWED_PUNCTUATION` inside,
at most :data:`MAX_SUBJECT_CODE` characters. Codes stored before this rule stay as they are
(their pages are reached through URL-encoded addresses); only new codes are checked.
"""

from __future__ import annotations

import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.alignment import MAX_SUBJECT_CODE
from celltrial.ingest.report import ValidationReport

#: Characters a code may hold besides letters and digits, after the first (``+``: a hospital
#: number read as 2.5e+20 is kept as written; parentheses: "P7 (repeat)").
ALLOWED_PUNCTUATION = " -_.+()"
#: What a refused code is told (one sentence, in plain words).
ALLOWED = (
    "letters, digits, spaces and - _ . + ( ) (starting with a letter or digit, at most "
    f"{MAX_SUBJECT_CODE} characters)"
)


def subject_code_problem(code: str) -> str | None:
    """What is wrong with ``code`` (already stripped) as a new subject code; None if nothing."""
    if not code:
        return "a subject code is required"
    if len(code) > MAX_SUBJECT_CODE:
        return f"{len(code)} characters; at most {MAX_SUBJECT_CODE}"
    refused = sorted({c for c in code if not (c.isalnum() or c in ALLOWED_PUNCTUATION)})
    if refused:
        shown = " ".join(_shown(c) for c in refused)
        return f"{shown} {'is' if len(refused) == 1 else 'are'} not allowed"
    if not code[0].isalnum():
        return "it must start with a letter or digit"
    return None


def check_subject_code(code: str | None) -> str:
    """The code, stripped of spaces at its ends; :class:`DataError` naming the characters
    allowed when it cannot be a new subject's code."""
    text = (code or "").strip()
    problem = subject_code_problem(text)
    if problem is not None:
        raise DataError(f"subject code {text[:40]!r}: {problem}; use {ALLOWED}")
    return text


def report_new_subject_codes(
    new: pd.DataFrame, report: ValidationReport, *, column: str | None
) -> None:
    """An error per subject to be registered (``new``: columns ``subject``, ``source_row``)
    whose code is not allowed: the import is refused, naming the row."""
    if new is None or not len(new):
        return
    codes = new["subject"].astype(str).str.strip()
    problems = codes.map(subject_code_problem)
    bad = problems.notna()
    if not bad.any():
        return
    rows = new.loc[bad, "source_row"] if "source_row" in new.columns else [None] * int(bad.sum())
    report.add(
        "error",
        "bad_subject_code",
        row=[None if pd.isna(r) else int(r) for r in rows],
        column=column,
        value=codes[bad].tolist(),
        expected=[f"a subject code of {ALLOWED} ({p})" for p in problems[bad]],
    )


def _shown(character: str) -> str:
    if character == " ":
        return "a space"
    if not character.isprintable():
        return f"U+{ord(character):04X}"
    return character
