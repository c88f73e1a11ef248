"""Subject facts as readers find them: sex words and codes, birth date to age, body size.

Every reader (wide LIS files, REDCap, ODM, FHIR, long files with a mapping) turns what it finds
into the columns of :data:`celltrial.ingest.frame.SUBJECT_FIELDS` through these helpers, so one
patient's facts read the same whichever file they came in. A value that cannot be read is named
to the caller (to report by row), never silently dropped.
"""

from __future__ import annotations

import pandas as pd

#: Words for sex as hospitals and EDC systems write them (case-folded, stripped).
SEX_WORDS: dict[str, str] = {
    "m": "M",
    "male": "M",
    "man": "M",
    "masculine": "M",
    "男": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "feminine": "F",
    "女": "F",
}

#: Plausible ranges (inclusive) of the numeric facts; outside them a value is an error by row.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "age": (0.0, 120.0),
    "height_cm": (30.0, 250.0),
    "weight_kg": (0.5, 400.0),
}
UNITS: dict[str, str] = {"age": "years", "height_cm": "cm", "weight_kg": "kg"}


def read_sex(values: pd.Series, codes: dict[str, str] | None = None) -> tuple[pd.Series, pd.Series]:
    """(sex as "M"/"F" or None, mask of non-empty values that are neither).

    ``codes`` (a mapping's ``sex_codes`` or a REDCap field's choices) is tried first, as
    written and then case-folded; then the words of :data:`SEX_WORDS`.
    """
    text = values.astype("string").str.strip()
    text = text.where(text != "")
    out = pd.Series(None, index=values.index, dtype=object)
    if codes:
        folded_codes = {str(k).strip().casefold(): v for k, v in codes.items()}
        out = text.map(lambda v: None if pd.isna(v) else folded_codes.get(str(v).casefold()))
        out = out.astype(object)
    words = text.str.casefold().map(SEX_WORDS)
    out = out.where(out.notna(), words).astype(object)
    out = out.where(out.isin(["M", "F"]), None)
    unreadable = text.notna() & out.isna()
    return out, unreadable.fillna(False).astype(bool)


def age_from_birth(birth: pd.Series, reference: pd.Series) -> pd.Series:
    """Age in completed years at ``reference`` (both datetimes; NaN where either is missing
    or the birth date follows the reference)."""
    born = pd.to_datetime(birth, utc=True)
    at = pd.to_datetime(reference, utc=True)
    years = at.dt.year - born.dt.year
    before_birthday = (at.dt.month < born.dt.month) | (
        (at.dt.month == born.dt.month) & (at.dt.day < born.dt.day)
    )
    age = (years - before_birthday.astype("Int64")).astype("Float64")
    age = age.where(born <= at)
    return age.astype(float)


def implausible(values: pd.Series, fact: str) -> pd.Series:
    """Mask of present values of ``fact`` (age, height_cm, weight_kg) outside
    :data:`PLAUSIBLE`."""
    low, high = PLAUSIBLE[fact]
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna() & ((numbers < low) | (numbers > high))


def expected_text(fact: str) -> str:
    """What a reader says a value of ``fact`` should be, for a validation message."""
    low, high = PLAUSIBLE[fact]
    return f"a number of {UNITS[fact]} from {low:g} to {high:g}"
