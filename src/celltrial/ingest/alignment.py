"""Refuse files whose columns are not where their header says: a shifted or swapped column.

A trailing comma on every row, a cell missing at the start of each row, or a header whose
columns are in another order put times, test names or results where the subject IDs belong.
Imported as they are, such a file registers subjects named ``2020-02-10 08:00`` or ``CRP`` and
drops every result. Two checks stop it before anything is stored:

- :func:`check_subject_codes`: most of a file's subject codes look like times, test names or
  numbers with decimals — an error naming the column ("column X holds times, not subject IDs:
  are the columns shifted?");
- :func:`check_something_stored`: a file with results none of which can be stored is refused
  (an import that stores nothing never reports success).

Subject codes are also checked against what the database keeps (:data:`MAX_SUBJECT_CODE`
characters), the same on SQLite (which would keep more) and PostgreSQL (which refuses more).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from celltrial.ingest.report import ValidationReport

#: The longest subject code the database keeps (``subject.code``, VARCHAR(64)).
MAX_SUBJECT_CODE = 64
#: The longest cohort name the database keeps (``subject.cohort``, VARCHAR(64)).
MAX_COHORT = 64
#: Share of a file's rows whose subject code looks like another column's content for the
#: subject column to count as misplaced (a study may have a code like 6.5 among others).
MISPLACED_SHARE = 0.5
#: Distinct codes with decimals it takes to call a subject column one of results.
MIN_DECIMAL_CODES = 3
_DECIMAL = re.compile(r"^\s*[+-]?\d+[.,]\d+\s*$")
_DIGITS = re.compile(r"^\s*\d+\s*$")
_SHOWN = 5


def code_kind(code: str) -> str | None:
    """What a subject code looks like when it is not one: ``times``, ``test names`` or
    ``numbers with decimals``; None for a plausible code."""
    from celltrial.ingest.names import match_test
    from celltrial.ingest.times import _DATE

    text = str(code).strip()
    if not text:
        return None
    if _DECIMAL.match(text):
        return "numbers with decimals"
    if not _DIGITS.match(text) and _DATE.search(text):  # 20200210 may be a hospital number
        return "times"
    if not _DIGITS.match(text) and match_test(text) is not None:
        return "test names"
    return None


def check_subject_codes(
    codes: pd.Series,
    rows: pd.Series,
    report: ValidationReport,
    *,
    column: str,
    kinds: dict[str, str | None] | None = None,
) -> bool:
    """Report (error) subject codes that cannot be stored (too long) and a subject column that
    holds another column's content. ``codes``: each row's code as written (None where empty);
    ``rows``: the file's row numbers. Returns whether the column was found misplaced.
    ``kinds``: code → :func:`code_kind` of the codes seen so far, kept by the caller across a
    file's chunks (each code is looked at once), filled in here."""
    # each distinct cell stripped once; cells that strip to the same code are one code
    text = codes.astype("string")
    position, distinct = pd.factorize(text)  # a missing cell: -1
    stripped = pd.Series(distinct, dtype=text.dtype).str.strip()
    usable = (stripped.notna() & (stripped != "")).fillna(False).to_numpy(dtype=bool)
    keys = np.where(usable, stripped.to_numpy(dtype=object, na_value=None), None)
    key_of_distinct, names = pd.factorize(keys)  # a blank cell: -1
    row_key = np.append(key_of_distinct, -1)[position]
    present = row_key >= 0
    if not present.any():
        return False
    numbers = rows[pd.Series(present, index=codes.index)].to_numpy()
    keys_here = row_key[present]
    # each code's first row, in the order codes first appear (drop_duplicates("code"))
    _, first_at = np.unique(keys_here, return_index=True)
    first_at = np.sort(first_at)
    first = pd.DataFrame(
        {
            "code": np.asarray(names, dtype=object)[keys_here[first_at]],
            "row": numbers[first_at],
        }
    )
    rows_per_code = np.bincount(keys_here, minlength=len(names))[keys_here[first_at]]
    too_long = first[first["code"].str.len() > MAX_SUBJECT_CODE]
    if len(too_long):
        report.add(
            "error",
            "too_long",
            row=too_long["row"].astype(int).tolist(),
            column=column,
            value=[c[:40] + "…" for c in too_long["code"]],
            expected=[
                f"a subject ID of at most {MAX_SUBJECT_CODE} characters (this one has {len(c)})"
                for c in too_long["code"]
            ],
        )
    kinds = {} if kinds is None else kinds
    kinds.update((code, code_kind(code)) for code in first["code"] if code not in kinds)
    # rows per kind, kinds in order of first appearance, then as value_counts() sorts them
    of_code = [kinds[code] for code in first["code"]]
    totals: dict[str, int] = {}
    for kind_of, n in zip(of_code, rows_per_code.tolist(), strict=True):
        if kind_of is not None:
            totals[kind_of] = totals.get(kind_of, 0) + n
    counts = pd.Series(totals, dtype="int64").sort_values(ascending=False, kind="stable")
    if counts.empty or counts.sum() <= MISPLACED_SHARE * int(present.sum()):
        return False
    kind = str(counts.index[0])
    examples = first[np.array([k == kind for k in of_code], dtype=bool)]
    if kind == "numbers with decimals" and len(examples) < MIN_DECIMAL_CODES:
        return False  # a study may number a patient 6.5; results are many and vary
    shown = ", ".join(f"{c!r} (row {int(r)})" for c, r in examples.head(_SHOWN).to_numpy())
    more = f" and {len(examples) - _SHOWN} more" if len(examples) > _SHOWN else ""
    report.add(
        "error",
        "misaligned_columns",
        row=int(examples["row"].iloc[0]),
        column=column,
        value=str(examples["code"].iloc[0]),
        expected=f"subject IDs: column {column} holds {kind}, not subject IDs ({shown}{more}; "
        f"{int(counts.sum())} of {int(present.sum())} rows): are the columns shifted (a cell too "
        "many or too few on each row, e.g. a trailing comma) or the header's names in another "
        "order? Nothing was stored",
    )
    return True


def check_something_stored(report: ValidationReport) -> None:
    """An error when the file has results and none of them can be stored."""
    counts = report.counts
    if not counts.get("results") or counts.get("stored", 0) + counts.get("flagged", 0) > 0:
        return
    if not report.ok:
        return  # refused already, for the errors named
    messages = report.messages
    reasons = messages[messages["severity"] != "info"]["kind"].value_counts()
    why = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in reasons.head(4).items())
    report.add(
        "error",
        "nothing_stored",
        row=None,
        column=None,
        value=f"{counts['results']} results",
        expected="at least one result that can be stored: none of the file's "
        f"{counts['results']} results can be ({why or 'see the messages'}); an import that "
        "stores nothing is refused. Are the columns shifted, or does the file need a mapping "
        "(--suggest-mapping)?",
    )


def check_cohort_name(cohort: str | None) -> str | None:
    """A message when an external cohort's name is longer than the database keeps."""
    if cohort is not None and len(cohort) > MAX_COHORT:
        return (
            f"the cohort name {cohort[:40]!r}… has {len(cohort)} characters; expected at most "
            f"{MAX_COHORT} (give a shorter one with --cohort NAME)"
        )
    return None
