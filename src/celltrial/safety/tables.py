"""Safety tables: who had what, how bad, how serious, and how labs shifted from baseline.

For studies of a handful of subjects every count comes with the subjects' IDs, so a reader sees
the patients behind the percentages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    rows = [
        _row("Any treatment-emergent adverse event", emergent["subject_id"], n, len(emergent)),
        _row(
            "Serious adverse event",
            emergent.loc[emergent["serious"].astype(bool), "subject_id"],
            n,
            int(emergent["serious"].astype(bool).sum()),
        ),
        _row(
            "Adverse event of grade ≥ 3",
            emergent.loc[emergent["grade"].fillna(0) >= 3, "subject_id"],
            n,
            int((emergent["grade"].fillna(0) >= 3).sum()),
        ),
        _row(
            "Adverse event related to the product (possibly, probably, definitely)",
            emergent.loc[emergent["related"], "subject_id"],
            n,
            int(emergent["related"].sum()),
        ),
        _row(
            f"Adverse event with onset within {window_hours:g} h of an infusion",
            emergent.loc[emergent["infusion_related"], "subject_id"],
            n,
            int(emergent["infusion_related"].sum()),
        ),
        _row(
            "Death (grade 5 adverse event)",
            emergent.loc[emergent["grade"] == 5, "subject_id"],
            n,
            int((emergent["grade"] == 5).sum()),
        ),
    ]
    if signals is not None and len(signals):
        detected = signals[signals["detected"].astype(bool)]
        rows.append(
            _row("Vital-sign infusion signal detected", detected["subject_id"], n, len(detected))
        )
    if lab_grades is not None and len(lab_grades):
        post = _post_baseline(lab_grades)
        severe = post[(post["grade_low"].fillna(0) >= 3) | (post["grade_high"].fillna(0) >= 3)]
        rows.append(
            _row(
                "Laboratory toxicity of grade ≥ 3 after the first infusion",
                severe["subject_id"],
                n,
                len(severe),
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
    rows = []
    for term, grades in worst.groupby(level="term"):
        counts = grades.value_counts()
        rows.append(
            {
                "term": term,
                **{f"grade {g}": int(counts.get(g, 0)) for g in range(1, 6)},
                "grade unknown": int(counts.get(0, 0)),
                "subjects": len(grades),
                "events": int((ae["term"] == term).sum()),
                "subject_ids": ", ".join(sorted(grades.index.get_level_values("subject_id"))),
            }
        )
    return (
        pd.DataFrame(rows, columns=columns)
        .sort_values(["subjects", "term"], ascending=[False, True])
        .reset_index(drop=True)
    )


def _post_baseline(lab_grades: pd.DataFrame) -> pd.DataFrame:
    return lab_grades[lab_grades["study_day"].notna() & (lab_grades["after_first_infusion"])]


def derive_first_infusion_flag(
    observations: pd.DataFrame, first_infusion: pd.Series
) -> pd.DataFrame:
    """A copy with ``after_first_infusion``: the observation is later than the first infusion."""
    out = observations.copy()
    first = pd.to_datetime(first_infusion.reindex(out["subject_id"]).to_numpy(), utc=True)
    out["after_first_infusion"] = (out["time"].to_numpy() > first) & ~pd.isna(first)
    return out


def summarize_lab_shifts(lab_grades: pd.DataFrame) -> pd.DataFrame:
    """Baseline grade vs worst post-baseline grade, per CTCAE term: subjects per cell.

    Baseline is the last graded value at or before the first infusion; subjects without a graded
    baseline or without a graded post-baseline value count as "missing" on that side.
    """
    rows = []
    for side in ("low", "high"):
        graded = lab_grades[lab_grades[f"term_{side}"].notna()]
        if graded.empty:
            continue
        term_col, grade_col = f"term_{side}", f"grade_{side}"
        frame = graded[["subject_id", "time", term_col, grade_col, "after_first_infusion"]]
        frame = frame.rename(columns={term_col: "term", grade_col: "grade"})
        frame = frame.assign(term=frame["term"].astype(str))
        base = (
            frame[~frame["after_first_infusion"] & frame["grade"].notna()]
            .sort_values("time")
            .groupby(["term", "subject_id"])["grade"]
            .last()
        )
        post = (
            frame[frame["after_first_infusion"] & frame["grade"].notna()]
            .groupby(["term", "subject_id"])["grade"]
            .max()
        )
        keys = base.index.union(post.index)
        table = pd.DataFrame(
            {"baseline": base.reindex(keys), "worst": post.reindex(keys)}, index=keys
        ).reset_index()
        for column in ("baseline", "worst"):
            table[column] = table[column].map(lambda g: "missing" if pd.isna(g) else str(int(g)))
        counts = table.groupby(["term", "baseline", "worst"]).size().rename("subjects")
        rows.append(counts.reset_index().assign(direction=side))
    if not rows:
        return pd.DataFrame(columns=["term", "direction", "baseline", "worst", "subjects"])
    return pd.concat(rows, ignore_index=True)[
        ["term", "direction", "baseline", "worst", "subjects"]
    ]


def list_lab_toxicities(lab_grades: pd.DataFrame, *, minimum: int = 3) -> pd.DataFrame:
    """Post-baseline lab values of grade ≥ ``minimum`` (either direction)."""
    post = _post_baseline(lab_grades)
    rows = []
    for side in ("low", "high"):
        hit = post[post[f"grade_{side}"].fillna(0) >= minimum]
        rows.append(
            hit.assign(term=hit[f"term_{side}"].astype(str), grade=hit[f"grade_{side}"])[
                ["subject_id", "study_day", "time", "test", "value", "unit", "term", "grade"]
            ]
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
) -> SafetySummary:
    """All safety tables of a study (inputs already timed, graded and flagged)."""
    n = len(subject_ids)
    serious = adverse_events[
        adverse_events["serious"].astype(bool) & adverse_events["subject_id"].isin(subject_ids)
    ]
    detected = signals[signals["detected"].astype(bool)] if len(signals) else signals
    reported = adverse_events[
        adverse_events["infusion_related"] & adverse_events["subject_id"].isin(subject_ids)
    ]
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
        shifts=summarize_lab_shifts(lab_grades),
        lab_toxicities=list_lab_toxicities(lab_grades),
        signals=detected.reset_index(drop=True) if len(detected) else detected,
        reported=reported.reset_index(drop=True),
        listing=adverse_events[adverse_events["subject_id"].isin(subject_ids)].reset_index(
            drop=True
        ),
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
