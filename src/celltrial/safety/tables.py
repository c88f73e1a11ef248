"""Safety tables: who had what, how bad, how serious, and how labs shifted from baseline.

For studies of a handful of subjects every count comes with the subjects' IDs, so a reader sees
the patients behind the percentages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SafetySummary:
    """Safety results of one study.

    ``summary``: one row per safety category (subjects n, %, their IDs, events).
    ``by_term``: AE terms with subjects by worst grade. ``serious``: SAE listing.
    ``shifts``: lab toxicity shift (baseline grade vs worst post-baseline grade per term).
    ``lab_toxicities``: post-baseline lab values of grade ≥ 3. ``signals``: vital-sign signals
    detected after infusions, beside ``reported``: the AEs reported in the reaction window.
    """

    summary: pd.DataFrame
    by_term: pd.DataFrame
    serious: pd.DataFrame
    shifts: pd.DataFrame
    lab_toxicities: pd.DataFrame
    signals: pd.DataFrame
    reported: pd.DataFrame
    listing: pd.DataFrame
    n: int
    method: str
    caveats: tuple[str, ...] = field(default_factory=tuple)


def _row(label: str, subjects: pd.Series, n: int, events: int) -> dict:
    ids = sorted(set(subjects))
    return {
        "category": label,
        "subjects": len(ids),
        "percent": 100.0 * len(ids) / n if n else np.nan,
        "subject_ids": ", ".join(ids),
        "events": events,
    }


def summarize_ae_overview(
    subject_ids: list[str],
    adverse_events: pd.DataFrame,
    *,
    lab_grades: pd.DataFrame | None = None,
    signals: pd.DataFrame | None = None,
    window_hours: float,
) -> pd.DataFrame:
    """Subjects (n, %, IDs) and events per safety category; AEs counted when treatment-emergent."""
    n = len(subject_ids)
    ae = adverse_events[adverse_events["subject_id"].isin(subject_ids)]
    emergent = ae[ae["treatment_emergent"]] if "treatment_emergent" in ae else ae
    grade = emergent["grade"]
    categories = [
        ("Any treatment-emergent adverse event", np.ones(len(emergent), dtype=bool)),
        ("Serious adverse event", emergent["serious"].astype(bool).to_numpy()),
        ("Adverse event of grade ≥ 3", (grade.fillna(0) >= 3).to_numpy(dtype=bool)),
        (
            "Adverse event related to the product (possibly, probably, definitely)",
            emergent["related"].to_numpy(dtype=bool),
        ),
        (
            f"Adverse event with onset within {window_hours:g} h of an infusion",
            emergent["infusion_related"].to_numpy(dtype=bool),
        ),
        ("Death (grade 5 adverse event)", (grade == 5).to_numpy(dtype=bool)),
    ]
    subjects = emergent["subject_id"].to_numpy()
    rows = [_row(label, subjects[mask], n, int(mask.sum())) for label, mask in categories]
    if signals is not None and len(signals):
        detected = signals[signals["detected"].astype(bool)]
        rows.append(
            _row("Vital-sign infusion signal detected", detected["subject_id"], n, len(detected))
        )
    if lab_grades is not None and len(lab_grades):
        severe = _post_baseline(lab_grades) & (
            (lab_grades["grade_low"].fillna(0) >= 3) | (lab_grades["grade_high"].fillna(0) >= 3)
        )
        rows.append(
            _row(
                "Laboratory toxicity of grade ≥ 3 after the first infusion",
                lab_grades.loc[severe, "subject_id"],
                n,
                int(severe.sum()),
            )
        )
    return pd.DataFrame(rows)


def summarize_ae_terms(subject_ids: list[str], adverse_events: pd.DataFrame) -> pd.DataFrame:
    """One row per AE term: subjects by their worst grade, subjects in all, events."""
    ae = adverse_events[adverse_events["subject_id"].isin(subject_ids)]
    if "treatment_emergent" in ae:
        ae = ae[ae["treatment_emergent"]]
    columns = [
        "term",
        *(f"grade {g}" for g in range(1, 6)),
        "grade unknown",
        "subjects",
        "events",
        "subject_ids",
    ]
    if ae.empty:
        return pd.DataFrame(columns=columns)
    worst = ae.assign(grade=ae["grade"].fillna(0)).groupby(["term", "subject_id"])["grade"].max()
    by_term: dict[str, dict[str, float]] = {}
    for (term, subject), grade in worst.items():
        by_term.setdefault(term, {})[subject] = grade
    events = ae["term"].value_counts()
    rows = []
    for term, grades in by_term.items():
        counts = Counter(grades.values())
        rows.append(
            {
                "term": term,
                **{f"grade {g}": counts[g] for g in range(1, 6)},
                "grade unknown": counts[0],
                "subjects": len(grades),
                "events": int(events[term]),
                "subject_ids": ", ".join(sorted(grades)),
            }
        )
    return (
        pd.DataFrame(rows, columns=columns)
        .sort_values(["subjects", "term"], ascending=[False, True])
        .reset_index(drop=True)
    )


def _post_baseline(lab_grades: pd.DataFrame) -> pd.Series:
    """Which lab values are post-baseline: on a study day, after the first infusion."""
    return lab_grades["study_day"].notna() & lab_grades["after_first_infusion"]


def derive_first_infusion_flag(
    observations: pd.DataFrame, first_infusion: pd.Series
) -> pd.DataFrame:
    """A copy with ``after_first_infusion``: the observation is later than the first infusion."""
    first = pd.DatetimeIndex(
        pd.to_datetime(first_infusion, utc=True).reindex(observations["subject_id"])
    )
    time = observations["time"]
    # aware times compare as one array; other columns value by value (as Timestamps)
    times = time.array if isinstance(time.dtype, pd.DatetimeTZDtype) else time.to_numpy()
    after = (times > first) & ~pd.isna(first)
    return observations.assign(after_first_infusion=after)


def summarize_lab_shifts(lab_grades: pd.DataFrame) -> pd.DataFrame:
    """Baseline grade vs worst post-baseline grade, per CTCAE term: subjects per cell.

    Baseline is the last graded value at or before the first infusion; subjects without a graded
    baseline or without a graded post-baseline value count as "missing" on that side.
    """
    subjects = pd.factorize(lab_grades["subject_id"])
    rows = [
        counts
        for side in ("low", "high")
        if (counts := _shift_counts(lab_grades, side, subjects)) is not None
    ]
    if not rows:
        return pd.DataFrame(columns=["term", "direction", "baseline", "worst", "subjects"])
    return pd.concat(rows, ignore_index=True)[
        ["term", "direction", "baseline", "worst", "subjects"]
    ]


def _shift_counts(
    lab_grades: pd.DataFrame, side: str, subjects: tuple[np.ndarray, pd.Index]
) -> pd.DataFrame | None:
    """One side's shift table (``term``, ``baseline``, ``worst``, ``subjects``, ``direction``)
    by term and grades; None when no row has a term on that side. ``subjects``: the codes of
    the rows' subjects and the subjects (:func:`pandas.factorize`)."""
    terms = lab_grades[f"term_{side}"]
    has_term = terms.notna().to_numpy()
    if not has_term.any():
        return None
    grades = lab_grades[f"grade_{side}"].to_numpy(dtype=np.float64, na_value=np.nan)
    graded = has_term & ~np.isnan(grades)
    after = lab_grades["after_first_infusion"].to_numpy(dtype=bool)
    term_codes, term_names = pd.factorize(terms)
    subject_codes, n_subjects = subjects[0], len(subjects[1])
    keys = term_codes.astype(np.int64) * n_subjects + subject_codes
    base_keys, base_grades = _baseline_grades(
        lab_grades["time"], keys, grades, np.flatnonzero(graded & ~after), subject_codes
    )
    later = np.flatnonzero(graded & after & (subject_codes >= 0))
    post_keys, inverse = np.unique(keys[later], return_inverse=True)
    post_grades = np.full(len(post_keys), -np.inf)
    np.maximum.at(post_grades, inverse, grades[later])
    both = np.union1d(base_keys, post_keys)
    if not len(both):
        return _empty_shifts(lab_grades[f"grade_{side}"].dtype)
    cells = np.stack(
        [
            both // n_subjects,
            _grade_at(both, base_keys, base_grades),
            _grade_at(both, post_keys, post_grades),
        ]
    )
    cells, counts = np.unique(cells, axis=1, return_counts=True)
    table = sorted(
        (str(term_names[term]), _grade_label(base), _grade_label(worst), int(n))
        for (term, base, worst), n in zip(cells.T.tolist(), counts.tolist(), strict=True)
    )
    term, baseline, worst, n = zip(*table, strict=True)
    return pd.DataFrame(
        {
            "term": pd.array(term, dtype=str),
            "baseline": pd.array(baseline, dtype=str),
            "worst": pd.array(worst, dtype=str),
            "subjects": np.array(n, dtype=np.int64),
            "direction": pd.array([side] * len(term), dtype=str),
        }
    )


def _baseline_grades(
    times: pd.Series,
    keys: np.ndarray,
    grades: np.ndarray,
    rows: np.ndarray,
    subject_codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted keys of the baseline ``rows`` and the grade of each key's last row in time;
    equal times in the order sorting the frame by time gives them."""
    rows = rows[pd.Series(times.array[rows]).sort_values().index.to_numpy()]
    rows = rows[subject_codes[rows] >= 0][::-1]
    keys_found, last = np.unique(keys[rows], return_index=True)
    return keys_found, grades[rows[last]]


def _empty_shifts(grade_dtype: Any) -> pd.DataFrame:
    """A side's shift table when it has terms but no graded values."""
    empty = pd.array([], dtype=grade_dtype)
    return pd.DataFrame(
        {
            "term": pd.array([], dtype=str),
            "baseline": empty,
            "worst": empty,
            "subjects": np.zeros(0, dtype=np.int64),
            "direction": pd.array([], dtype=str),
        }
    )


def _grade_at(keys: np.ndarray, known: np.ndarray, grades: np.ndarray) -> np.ndarray:
    """The grade of each of ``keys`` in the sorted ``known`` keys (``grades``), else -1."""
    if not len(known):
        return np.full(len(keys), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return np.where(known[at] == keys, grades[at], -1).astype(np.int64)


def _grade_label(grade: int) -> str:
    """A shift table cell's grade: the grade, or "missing" (-1)."""
    return "missing" if grade < 0 else str(grade)


def list_lab_toxicities(lab_grades: pd.DataFrame, *, minimum: int = 3) -> pd.DataFrame:
    """Post-baseline lab values of grade ≥ ``minimum`` (either direction)."""
    post = _post_baseline(lab_grades)
    columns = ["subject_id", "study_day", "time", "test", "value", "unit"]
    rows = []
    for side in ("low", "high"):
        term, grade = f"term_{side}", f"grade_{side}"
        hit = lab_grades.loc[
            post & (lab_grades[grade].fillna(0) >= minimum), [*columns, term, grade]
        ]
        rows.append(
            hit.assign(term=hit[term].astype(str), grade=hit[grade])[[*columns, "term", "grade"]]
        )
    return (
        pd.concat(rows, ignore_index=True)
        .sort_values(["subject_id", "time"])
        .reset_index(drop=True)
    )


def summarize_safety(
    subject_ids: list[str],
    adverse_events: pd.DataFrame,
    *,
    lab_grades: pd.DataFrame,
    signals: pd.DataFrame,
    window_hours: float,
    lab_tables: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> SafetySummary:
    """All safety tables of a study (inputs already timed, graded and flagged; ``lab_tables``:
    the shift table and the grade ≥ 3 listing of these lab grades, if already made)."""
    n = len(subject_ids)
    own = adverse_events["subject_id"].isin(subject_ids)
    serious = adverse_events[adverse_events["serious"].astype(bool) & own]
    detected = signals[signals["detected"].astype(bool)] if len(signals) else signals
    reported = adverse_events[adverse_events["infusion_related"] & own]
    caveats = []
    if n < 20:
        caveats.append(
            f"With {n} subjects, percentages are shown with the subjects' IDs; a 95 % upper "
            f"bound for an event seen in none of {n} subjects is {100 * (1 - 0.05 ** (1 / n)):.0f}"
            " % (exact binomial), so absence of an event is weak evidence of its rarity."
            if n
            else "No subjects."
        )
    if len(detected):
        unreported = _unreported_signals(detected, reported)
        if unreported:
            caveats.append(
                f"{unreported} vital-sign signal(s) after an infusion have no adverse event "
                "reported in the reaction window: review them."
            )
    return SafetySummary(
        summary=summarize_ae_overview(
            subject_ids,
            adverse_events,
            lab_grades=lab_grades,
            signals=signals,
            window_hours=window_hours,
        ),
        by_term=summarize_ae_terms(subject_ids, adverse_events),
        serious=serious.reset_index(drop=True),
        shifts=summarize_lab_shifts(lab_grades) if lab_tables is None else lab_tables[0],
        lab_toxicities=list_lab_toxicities(lab_grades) if lab_tables is None else lab_tables[1],
        signals=detected.reset_index(drop=True) if len(detected) else detected,
        reported=reported.reset_index(drop=True),
        listing=adverse_events[own].reset_index(drop=True),
        n=n,
        method=(
            "Adverse events are counted when treatment-emergent (onset at or after the first "
            f"infusion); onset within {window_hours:g} h of an infusion start marks an event as "
            "infusion-related. Laboratory values are graded with CTCAE v5.0 (laboratory part of "
            "each criterion); the shift table compares the last graded value before the first "
            "infusion with the worst graded value after it. Vital-sign signals compare readings "
            "after each infusion start with the last reading before it."
        ),
        caveats=tuple(caveats),
    )


def _unreported_signals(detected: pd.DataFrame, reported: pd.DataFrame) -> int:
    keys = set(zip(reported["subject_id"], reported["last_infusion"], strict=True))
    return sum(
        (s, n) not in keys
        for s, n in zip(detected["subject_id"], detected["infusion_number"], strict=True)
    )
