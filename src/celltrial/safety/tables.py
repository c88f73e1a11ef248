"""Safety tables: who had what, how bad, how serious, and how labs shifted from baseline.

For studies of a handful of subjects every count comes with the subjects' IDs, so a reader sees
the patients behind the percentages. Lab toxicities are counted when treatment-emergent, as
``conventions.yaml`` defines it (by default: a grade after the first infusion worse than the
subject's baseline grade); abnormalities already there before treatment are shown apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from celltrial.safety.conventions import GradingConventions, load_grading_conventions
from celltrial.safety.deaths import DEATH_PROBLEM_COLUMNS, list_death_problems, load_death_rules


@dataclass(frozen=True)
class SafetySummary:
    """Safety results of one study.

    ``summary``: one row per safety category (subjects n, %, their IDs, events).
    ``by_term``: AE terms with subjects by worst grade. ``serious``: SAE listing.
    ``shifts``: lab toxicity shift (baseline grade vs worst post-baseline grade per term).
    ``lab_toxicities``: treatment-emergent lab values of grade ≥ 3 (after the first infusion,
    worse than the subject's baseline grade). ``lab_baseline_abnormalities``: per subject and
    term, the values of grade ≥ 3 after the first infusion that are no worse than baseline
    (there before treatment; never counted as toxicities). ``signals``: vital-sign signals
    detected after infusions, beside ``reported``: the AEs reported in the reaction window.

    ``n`` is the safety population: the subjects who received any infusion; ``n_enrolled`` the
    study's subjects in all and ``not_treated`` those without an infusion recorded (outside every
    table). ``data_problems``: adverse events that break the rules for recording a death
    (:func:`~celltrial.safety.deaths.list_death_problems`), to be queried, never corrected here.
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
    lab_baseline_abnormalities: pd.DataFrame = field(default_factory=pd.DataFrame)
    conventions: str = ""  # the grading conventions applied, in a sentence
    data_problems: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(DEATH_PROBLEM_COLUMNS))
    )
    n_enrolled: int | None = None  # None: every subject given was treated
    not_treated: tuple[str, ...] = ()

    @property
    def population(self) -> str:
        """The safety population in words: "the 5 subjects who received any infusion", or
        "the 6 subjects who received any infusion, of 8 enrolled (not treated: S007, S008 — no
        infusion recorded)"."""
        text = f"the {self.n} subject{'s' if self.n != 1 else ''} who received any infusion"
        if self.not_treated:
            enrolled = self.n_enrolled if self.n_enrolled is not None else self.n
            text += (
                f", of {enrolled} enrolled (not treated: {', '.join(self.not_treated)} — no "
                "infusion recorded)"
            )
        return text


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
    conventions: GradingConventions | None = None,
) -> pd.DataFrame:
    """Subjects (n, %, IDs) and events per safety category; AEs counted when treatment-emergent,
    lab values when treatment-emergent as ``conventions`` define it (abnormalities of grade ≥ 3
    already there before treatment on a row of their own)."""
    n = len(subject_ids)
    ae = adverse_events[adverse_events["subject_id"].isin(subject_ids)]
    emergent = ae[ae["treatment_emergent"]] if "treatment_emergent" in ae else ae
    grade = emergent["grade"]
    deaths = load_death_rules()
    fatal = grade.fillna(0).eq(deaths.fatal_grade).to_numpy(dtype=bool)
    if "outcome" in emergent:
        fatal = fatal | emergent["outcome"].eq(deaths.fatal_outcome).to_numpy(
            dtype=bool, na_value=False
        )
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
        ("Death (adverse event of grade 5 or with a fatal outcome)", fatal),
    ]
    subjects = emergent["subject_id"].to_numpy()
    rows = [_row(label, subjects[mask], n, int(mask.sum())) for label, mask in categories]
    if signals is not None and len(signals):
        detected = signals[signals["detected"].astype(bool)]
        rows.append(
            _row("Vital-sign infusion signal detected", detected["subject_id"], n, len(detected))
        )
    if lab_grades is not None and len(lab_grades):
        conventions = conventions or load_grading_conventions()
        flagged = _with_emergence(lab_grades, conventions)
        post = _post_baseline(flagged).to_numpy(dtype=bool)
        emergent = np.zeros(len(flagged), dtype=bool)
        present = np.zeros(len(flagged), dtype=bool)
        for side in ("low", "high"):
            severe = post & (flagged[f"grade_{side}"].fillna(0) >= 3).to_numpy(dtype=bool)
            side_emergent = flagged[f"emergent_{side}"].to_numpy(dtype=bool)
            emergent |= severe & side_emergent
            present |= severe & ~side_emergent
        subjects = flagged["subject_id"].to_numpy()
        worse = conventions.treatment_emergent.rule == "worse_than_baseline"
        rows.append(
            _row(
                "Treatment-emergent laboratory toxicity of grade ≥ 3 (worse than baseline)"
                if worse
                else "Laboratory toxicity of grade ≥ 3 after the first infusion",
                subjects[emergent],
                n,
                int(emergent.sum()),
            )
        )
        if worse:
            rows.append(
                _row(
                    "Laboratory abnormality of grade ≥ 3 present before treatment, no worse since "
                    "(not counted)",
                    subjects[present & ~emergent],
                    n,
                    int((present & ~emergent).sum()),
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


_EMERGENCE = ("baseline_grade_low", "emergent_low", "baseline_grade_high", "emergent_high")


def derive_lab_emergence(
    lab_grades: pd.DataFrame, *, conventions: GradingConventions | None = None
) -> pd.DataFrame:
    """A new frame: graded lab values (``derive_lab_grades`` with ``after_first_infusion``)
    plus, per side, ``baseline_grade_<side>`` (Int8: the subject's grade for that term at
    baseline, the last graded value at or before the first infusion; NA when there is none) and
    ``emergent_<side>`` (bool: a treatment-emergent abnormality by ``conventions.yaml``,
    ``treatment_emergent``).

    ``worse_than_baseline``: a graded value after the first infusion whose grade is worse than
    the baseline grade (``missing_baseline_grade`` standing in for a missing one);
    ``any_after_first_infusion``: every value of grade ≥ 1 after the first infusion.
    """
    te = (conventions or load_grading_conventions()).treatment_emergent
    subject_codes, subject_names = pd.factorize(lab_grades["subject_id"])
    n_subjects = max(len(subject_names), 1)
    after = lab_grades["after_first_infusion"].to_numpy(dtype=bool)
    columns: dict[str, object] = {}
    for side in ("low", "high"):
        terms = lab_grades[f"term_{side}"]
        has_term = terms.notna().to_numpy() & (subject_codes >= 0)
        grades = lab_grades[f"grade_{side}"].to_numpy(dtype=np.float64, na_value=np.nan)
        graded = has_term & ~np.isnan(grades)
        term_codes, _ = pd.factorize(terms)
        keys = term_codes.astype(np.int64) * n_subjects + subject_codes
        base_keys, base_grades = _baseline_grades(
            lab_grades["time"], keys, grades, np.flatnonzero(graded & ~after), subject_codes
        )
        baseline = np.where(has_term, _grade_at(keys, base_keys, base_grades), -1)
        if te.rule == "worse_than_baseline":
            reference = np.where(baseline < 0, te.missing_baseline_grade, baseline)
            emergent = graded & after & (grades > reference)
        else:
            emergent = graded & after & (grades >= 1)
        columns[f"baseline_grade_{side}"] = pd.arrays.IntegerArray(
            np.maximum(baseline, 0).astype(np.int8), baseline < 0
        )
        columns[f"emergent_{side}"] = emergent
    return lab_grades.assign(**{name: columns[name] for name in _EMERGENCE})


def _with_emergence(lab_grades: pd.DataFrame, conventions: GradingConventions) -> pd.DataFrame:
    """``lab_grades`` with the columns of :func:`derive_lab_emergence` (made if absent)."""
    if all(name in lab_grades.columns for name in _EMERGENCE):
        return lab_grades
    return derive_lab_emergence(lab_grades, conventions=conventions)


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


_TOXICITY_COLUMNS = ["subject_id", "study_day", "time", "test", "value", "unit"]


def _post_side_rows(
    lab_grades: pd.DataFrame, minimum: int, conventions: GradingConventions, *, emergent: bool
) -> pd.DataFrame:
    """Values after the first infusion of grade ≥ ``minimum`` on either side, treatment-emergent
    ones or (``emergent=False``) the others, one row per value and side."""
    flagged = _with_emergence(lab_grades, conventions)
    post = _post_baseline(flagged)
    assumed = {
        side: flagged[f"assumed_normal_baseline_{side}"]
        if f"assumed_normal_baseline_{side}" in flagged.columns
        else pd.Series(False, index=flagged.index)
        for side in ("low", "high")
    }
    rows = []
    for side in ("low", "high"):
        term, grade = f"term_{side}", f"grade_{side}"
        keep = (
            post & (flagged[grade].fillna(0) >= minimum) & (flagged[f"emergent_{side}"] == emergent)
        )
        hit = flagged.loc[keep]
        rows.append(
            pd.DataFrame(
                {
                    **{c: hit[c] for c in _TOXICITY_COLUMNS},
                    "term": hit[term].astype(str),
                    "grade": hit[grade],
                    "baseline_grade": hit[f"baseline_grade_{side}"],
                    "assumed_normal_baseline": assumed[side][keep].astype(bool),
                }
            )
        )
    return (
        pd.concat(rows, ignore_index=True)
        .sort_values(["subject_id", "time"], kind="stable")
        .reset_index(drop=True)
    )


def list_lab_toxicities(
    lab_grades: pd.DataFrame, *, minimum: int = 3, conventions: GradingConventions | None = None
) -> pd.DataFrame:
    """Treatment-emergent lab values of grade ≥ ``minimum`` (either direction), with the
    subject's baseline grade and whether the grade assumed a normal baseline."""
    conventions = conventions or load_grading_conventions()
    return _post_side_rows(lab_grades, minimum, conventions, emergent=True)


#: Columns of :func:`list_lab_baseline_abnormalities` (the dashboard shows them as they are).
BASELINE_ABNORMALITY_COLUMNS = (
    "subject_id",
    "test",
    "term",
    "baseline_grade",
    "worst_grade",
    "n_values",
    "first_study_day",
    "last_study_day",
)


def list_lab_baseline_abnormalities(
    lab_grades: pd.DataFrame, *, minimum: int = 3, conventions: GradingConventions | None = None
) -> pd.DataFrame:
    """Abnormalities there before treatment: per subject and term, the values of grade ≥
    ``minimum`` after the first infusion that are not treatment-emergent (no worse than the
    baseline grade), with the baseline grade, the worst grade after, how many values and on
    which study days."""
    conventions = conventions or load_grading_conventions()
    rows = _post_side_rows(lab_grades, minimum, conventions, emergent=False)
    columns = list(BASELINE_ABNORMALITY_COLUMNS)
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = (
        rows.groupby(["subject_id", "test", "term"], sort=True, observed=True)
        .agg(
            baseline_grade=("baseline_grade", "max"),
            worst_grade=("grade", "max"),
            n_values=("grade", "size"),
            first_study_day=("study_day", "min"),
            last_study_day=("study_day", "max"),
        )
        .reset_index()
    )
    return out[columns]


def summarize_safety(
    subject_ids: list[str],
    adverse_events: pd.DataFrame,
    *,
    lab_grades: pd.DataFrame,
    signals: pd.DataFrame,
    window_hours: float,
    lab_tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
    conventions: GradingConventions | None = None,
    not_treated: Sequence[str] = (),
) -> SafetySummary:
    """All safety tables of a study (inputs already timed, graded and flagged; ``lab_tables``:
    the shift table, the treatment-emergent grade ≥ 3 listing and the baseline abnormalities of
    these lab grades, if already made).

    ``subject_ids``: the safety population (the subjects who received any infusion); every
    table counts them alone. ``not_treated``: the study's other subjects (enrolled, no infusion
    recorded), named in the caveats. The data problems of deaths are listed over every adverse
    event given."""
    conventions = conventions or load_grading_conventions()
    if lab_tables is None:
        in_population = lab_grades["subject_id"].isin(subject_ids)
        if not in_population.all():  # values of subjects never treated: in no table
            lab_grades = lab_grades[in_population]
        lab_grades = _with_emergence(lab_grades, conventions)
    n = len(subject_ids)
    not_treated = tuple(sorted(set(not_treated) - set(subject_ids)))
    own = adverse_events["subject_id"].isin(subject_ids)
    data_problems = list_death_problems(adverse_events)
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
    if not_treated:
        outside = adverse_events["subject_id"].isin(not_treated)
        caveats.append(
            f"Safety population: the {n} subject(s) who received any infusion. "
            f"{len(not_treated)} enrolled subject(s) have no infusion recorded "
            f"({', '.join(not_treated)}) and are in no table"
            + (
                f" ({int(outside.sum())} adverse event(s) of theirs are not counted)."
                if outside.any()
                else "."
            )
        )
    if len(data_problems):
        who = ", ".join(sorted(set(data_problems["subject_id"])))
        caveats.append(
            f"{len(data_problems)} adverse-event data problem(s) in how deaths are recorded "
            f"(subjects {who}): listed with what to fix under 'Adverse-event data problems'; "
            "the tables show the events as recorded."
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
            conventions=conventions,
        ),
        by_term=summarize_ae_terms(subject_ids, adverse_events),
        serious=serious.reset_index(drop=True),
        shifts=summarize_lab_shifts(lab_grades) if lab_tables is None else lab_tables[0],
        lab_toxicities=(
            list_lab_toxicities(lab_grades, conventions=conventions)
            if lab_tables is None
            else lab_tables[1]
        ),
        lab_baseline_abnormalities=(
            list_lab_baseline_abnormalities(lab_grades, conventions=conventions)
            if lab_tables is None
            else lab_tables[2]
        ),
        signals=detected.reset_index(drop=True) if len(detected) else detected,
        reported=reported.reset_index(drop=True),
        listing=adverse_events[own].reset_index(drop=True),
        n=n,
        method=(
            "Adverse events are counted when treatment-emergent (onset at or after the first "
            f"infusion); onset within {window_hours:g} h of an infusion start marks an event as "
            "infusion-related. Laboratory values are graded with CTCAE "
            f"v{conventions.ctcae_version} (laboratory part of each criterion); the shift table "
            "compares the last graded value at or before the first infusion with the worst "
            "graded value after it. Vital-sign signals compare readings after each infusion "
            "start with the last reading before it."
        ),
        caveats=tuple(caveats),
        conventions=conventions.describe(),
        data_problems=data_problems,
        n_enrolled=n + len(not_treated),
        not_treated=not_treated,
    )


def _unreported_signals(detected: pd.DataFrame, reported: pd.DataFrame) -> int:
    keys = set(zip(reported["subject_id"], reported["last_infusion"], strict=True))
    return sum(
        (s, n) not in keys
        for s, n in zip(detected["subject_id"], detected["infusion_number"], strict=True)
    )
